"""For test workers that crash on purpose: wait until this node's standbys are done importing.

A restart takes only standbys whose imports are done (a standby still importing
means a cold start), so a test of a *warm* restart has its first attempt wait for
them, as ``rallypoint status --json`` shows them, before it fails. Load it by path
(``runpy.run_path``) or import it; call :func:`wait_until_ready`.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def wait_until_ready(timeout: float = 120.0) -> list[int]:
    """Once every local rank has a standby that says it is ready, their pids.

    [] at once when there are none: warm restarts off, or the launcher is torchrun.
    """
    if b"rallypoint" not in Path(f"/proc/{os.getppid()}/cmdline").read_bytes():
        return []  # under torchrun: no standbys
    run_dir = Path(os.environ["TORCHELASTIC_ERROR_FILE"]).parents[2]
    wanted = int(os.environ["LOCAL_WORLD_SIZE"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = _own_snapshot(run_dir)
        if snapshot is not None and "standbys" not in snapshot:
            return []  # warm restarts are off: there is nothing to wait for
        standbys = snapshot.get("standbys", []) if snapshot else []
        if len(standbys) == wanted and all(s.get("ready") for s in standbys):
            return [int(str(s["pid"])) for s in standbys]
        time.sleep(0.1)
    raise SystemExit(f"the standbys were not ready within {timeout} s")


def _own_snapshot(run_dir: Path) -> dict[str, list[dict[str, object]]] | None:
    """This agent's ``rallypoint status --json`` snapshot (the one that lists this worker)."""
    where = f"--log-dir={run_dir.parent}"
    command = [sys.executable, "-m", "rallypoint", "status", "--json", where]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    for snapshot in json.loads(done.stdout):
        if any(rank.get("pid") == os.getpid() for rank in snapshot.get("ranks", [])):
            return dict(snapshot)
    return None
