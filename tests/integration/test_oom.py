"""A worker killed by the kernel's OOM killer is named as such in the summary.

The test makes its own memory cgroup (v1 or v2, whichever this machine has)
with a small limit, starts the launcher inside it, and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env

pytestmark = pytest.mark.integration

LIMIT = 256 * 2**20


def _own_cgroup_dir() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup") / path.lstrip("/")
    raise AssertionError("no memory cgroup found")


@contextlib.contextmanager
def memory_cgroup() -> Iterator[Path]:
    folder = _own_cgroup_dir() / f"rpt-oom-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        if (folder / "memory.limit_in_bytes").exists():
            (folder / "memory.limit_in_bytes").write_text(str(LIMIT))
            with contextlib.suppress(OSError):
                (folder / "memory.memsw.limit_in_bytes").write_text(str(LIMIT))
        else:
            (folder / "memory.max").write_text(str(LIMIT))
            (folder / "memory.swap.max").write_text("0")
        yield folder
    finally:
        deadline = time.monotonic() + 10
        while (folder / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        folder.rmdir()


def test_oom_killed_worker_is_named(mark: str) -> None:
    with memory_cgroup() as group:
        script = (
            f"echo $$ > {group}/cgroup.procs && exec {sys.executable} -m rallypoint "
            f"--nproc-per-node=2 {WORKERS / 'hog.py'}"
        )
        result = subprocess.run(
            [shutil.which("sh") or "/bin/sh", "-c", script],
            env=launcher_env(mark),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    headline = next(line for line in result.stderr.splitlines() if "failed first" in line)
    assert "signal SIGKILL (killed by the kernel's OOM killer)" in headline
