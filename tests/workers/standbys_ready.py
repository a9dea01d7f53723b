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
from typing import Any


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
        if all_ready(standbys, wanted):
            return [int(str(s["pid"])) for s in standbys]
        time.sleep(0.1)
    raise SystemExit(f"the standbys were not ready within {timeout} s")


def all_ready(standbys: list[dict[str, object]], wanted: int) -> bool:
    """Whether ``standbys`` (a snapshot's) are ``wanted`` many, every one done importing."""
    return len(standbys) == wanted and all(s.get("ready") for s in standbys)


def snapshots(log_dir: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``rallypoint status --json --log-dir=LOG_DIR``: one snapshot per agent ([] if none)."""
    command = [sys.executable, "-m", "rallypoint", "status", "--json", f"--log-dir={log_dir}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return list(json.loads(done.stdout)) if done.returncode == 0 else []


def _own_snapshot(run_dir: Path) -> dict[str, Any] | None:
    """This agent's snapshot (the one that lists this worker); None if none answers yet."""
    for snapshot in snapshots(run_dir.parent):
        if any(rank.get("pid") == os.getpid() for rank in snapshot.get("ranks", [])):
            return snapshot
    return None
