"""Crash at once on attempt 0; on attempt 1 wait for the standby's imports, then crash; pass on 2.

Each attempt appends a JSON line to ``$PID_DIR/attempts.jsonl``: the attempt, its
pid, the time it started, and whether ``slow_import`` was loaded before the
program ran (only in a standby that warmed it). Attempt 1 writes the pids of
the standbys it waited for to ``$PID_DIR/standbys.json``.
"""

import sys
import time

STARTED = time.time()
PRELOADED = "slow_import" in sys.modules

import json  # noqa: E402
import os  # noqa: E402

attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
record = {"attempt": attempt, "pid": os.getpid(), "started": STARTED, "warm": PRELOADED}
with open(os.path.join(os.environ["PID_DIR"], "attempts.jsonl"), "a") as out:
    out.write(json.dumps(record) + "\n")
if attempt == 1:
    import runpy

    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standbys_ready.py")
    standbys = runpy.run_path(helper)["wait_until_ready"]()
    with open(os.path.join(os.environ["PID_DIR"], "standbys.json"), "w") as out:
        out.write(json.dumps(standbys))
if attempt < 2:
    sys.exit(1)
