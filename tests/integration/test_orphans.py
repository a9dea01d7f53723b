"""No orphan, ever: escaped descendants, signals to the whole step, a SIGKILLed agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    WORKERS,
    launcher_env,
    marked_pids,
    rallypoint,
    start_rallypoint,
    wait_until_gone,
)
from tests.harness import alive
from tests.harness import wait_for_file as wait_file
from tests.multinode.agents import free_port, wait_listening

pytestmark = pytest.mark.integration


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def guardian_of(launcher: int, timeout: float = 20) -> int:
    """The pid of ``launcher``'s guardian, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children(launcher):
            if b"_guardian_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        time.sleep(0.02)
    raise AssertionError("no guardian")


@pytest.mark.parametrize("escape", ["direct", "daemon", "nested"])
def test_a_setsid_grandchild_is_gone_when_its_attempt_ends(
    mark: str, tmp_path: Path, escape: str
) -> None:
    env = launcher_env(mark, PID_DIR=str(tmp_path), ESCAPE=escape, THEN="exit")
    result = rallypoint(["--nproc-per-node=2", str(WORKERS / "escaper.py")], env)
    assert result.returncode == 0, result.stderr
    escapees = [int(wait_file(tmp_path / f"escapee_0_{r}").split()[1]) for r in (0, 1)]
    assert [p for p in escapees if alive(p)] == []


def test_escapees_are_stopped_and_reaped_before_the_restart(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark, PID_DIR=str(tmp_path), ESCAPE="daemon", THEN="fail-first")
    launcher = start_rallypoint(["--max-restarts=1", str(WORKERS / "escaper.py")], env)
    try:
        first = int(wait_file(tmp_path / "escapee_0_0").split()[1])
        worker, second = map(int, wait_file(tmp_path / "escapee_1_0").split())
        assert not Path(f"/proc/{first}").exists()  # stopped, and reaped: not even a zombie
        assert children(launcher.pid) == {worker, second, guardian_of(launcher.pid)}
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.communicate(timeout=60)
    assert wait_until_gone(mark, 2.0) == []


def test_a_sigkilled_agent_leaves_no_escapee(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark, PID_DIR=str(tmp_path), ESCAPE="daemon", THEN="sleep")
    launcher = start_rallypoint(["--nproc-per-node=2", str(WORKERS / "escaper.py")], env)
    for rank in (0, 1):
        wait_file(tmp_path / f"escapee_0_{rank}")
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.communicate(timeout=10)
    assert wait_until_gone(mark, 2.0) == []


def test_usr1_to_every_process_of_the_step_leaves_no_worker(mark: str, tmp_path: Path) -> None:
    """As ``scancel --signal=USR1`` under proctrack/linuxproc, with workers that trap USR1."""
    env = launcher_env(mark, PID_DIR=str(tmp_path), IGNORE_SIGNALS="SIGUSR1")
    launcher = start_rallypoint(["--nproc-per-node=2", str(WORKERS / "sleeper.py")], env)
    for rank in (0, 1):
        wait_file(tmp_path / f"worker_{rank}")
    guardian_of(launcher.pid)
    for pid in marked_pids(mark):
        os.kill(pid, signal.SIGUSR1)
    launcher.communicate(timeout=10)
    assert launcher.returncode == -signal.SIGUSR1  # the agent dies by it, as torchrun does
    assert wait_until_gone(mark, 2.0) == []


def test_the_guardian_outlives_signals_sent_during_rendezvous(mark: str, tmp_path: Path) -> None:
    port = free_port()
    flags = ["--nnodes=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}"]
    dirs = [tmp_path / "a", tmp_path / "b"]
    for folder in dirs:
        folder.mkdir()
    argv = [sys.executable, "-m", "rallypoint", *flags, str(WORKERS / "sleeper.py")]
    first = subprocess.Popen(argv, env=launcher_env(mark, PID_DIR=str(dirs[0])))
    second: subprocess.Popen[bytes] | None = None
    try:
        guardian = guardian_of(first.pid)
        wait_listening("127.0.0.1", port)  # the first node waits in rendezvous
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
            os.killpg(guardian, sig)  # the guardian leads its own group
        time.sleep(0.2)
        assert alive(guardian)
        second = subprocess.Popen(argv, env=launcher_env(mark, PID_DIR=str(dirs[1])))
        workers = [int(p) for p in wait_file(dirs[0] / "worker_0").split()]
        wait_file(dirs[1] / "worker_0")
        first.kill()
        first.wait(timeout=10)
        deadline = time.monotonic() + 2.0
        while [p for p in workers if alive(p)] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [p for p in workers if alive(p)] == []
    finally:
        for launcher in (first, second):
            if launcher is not None and launcher.poll() is None:
                launcher.send_signal(signal.SIGTERM)
                launcher.wait(timeout=60)
