"""Shared helpers: run the launcher as a user would, and find leftover processes.

Every launcher started through :func:`launcher_env` carries a marker variable
unique to the test. Workers and their children inherit it, so after the test
``/proc/*/environ`` tells exactly which processes of the test are still alive;
the autouse fixture fails the test if any are, and kills them either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import MARK
from tests.harness import marked_pids as marked_pids  # re-exported: tests import it from here
from tests.harness import wait_until_gone as wait_until_gone  # re-exported too

REPO = Path(__file__).resolve().parent.parent
WORKERS = REPO / "tests" / "workers"


@pytest.fixture
def mark() -> Iterator[str]:
    """A marker for this test's processes; fails the test if any outlive it."""
    value = uuid.uuid4().hex
    yield value
    left = wait_until_gone(value, 5.0)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


PASSED_THROUGH = ("HOME", "PYTHONPATH", "TMPDIR")  # when the test process has them


def scratch_env() -> dict[str, str]:
    """The variables every launcher needs, and nothing else of the test process's environment.

    ``PYTHONPATH`` is kept so that a work tree's sources are the ones launched.
    """
    path = [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin"]
    env = {"PATH": os.pathsep.join(path)}
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    return env


def launcher_env(mark: str, **extra: str) -> dict[str, str]:
    """An environment for the launcher built from scratch, carrying the test's marker."""
    env = scratch_env()
    env.update({MARK: mark, "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def rallypoint(
    args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rallypoint ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "rallypoint", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_rallypoint(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m rallypoint ARGS`` in the background (pipes for its output)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rallypoint", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
