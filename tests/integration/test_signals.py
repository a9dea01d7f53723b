"""Signals to the launcher: forwarded, nothing left behind, torchrun's exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, marked_pids, start_rallypoint, wait_until_gone
from tests.harness import alive, wait_until
from tests.multinode.agents import free_port, wait_listening

pytestmark = pytest.mark.integration


def _wait_for_pids(folder: Path, count: int, timeout: float = 30) -> list[int]:
    def started() -> bool:
        files = list(folder.glob("worker_*"))
        return len(files) == count and all(f.read_text() for f in files)

    wait_until(started, timeout, f"{count} workers to write their pids in {folder}")
    return [int(p) for f in folder.glob("worker_*") for p in f.read_text().split()]


def _start_sleepers(
    mark: str,
    folder: Path,
    extra: list[str] | None = None,
) -> subprocess.Popen[str]:
    env = launcher_env(mark, PID_DIR=str(folder))
    args = ["--nproc-per-node=2", *(extra or []), str(WORKERS / "sleeper.py")]
    return start_rallypoint(args, env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_while_workers_run_stops_everything(
    mark: str, tmp_path: Path, sig: signal.Signals
) -> None:
    launcher = _start_sleepers(mark, tmp_path)
    pids = _wait_for_pids(tmp_path, 2)
    assert len(marked_pids(mark)) >= 5  # launcher, 2 workers, 2 sleep grandchildren
    launcher.send_signal(sig)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1, err
    assert f"received {sig.name}" in err
    assert "site-packages/rallypoint" not in err
    assert "src/rallypoint" not in err
    assert not [p for p in pids if alive(p)]
    assert wait_until_gone(mark, 2.0) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_startup_kills_the_launcher_by_that_signal(
    mark: str, tmp_path: Path, sig: signal.Signals
) -> None:
    launcher = _start_sleepers(mark, tmp_path)
    launcher.send_signal(sig)  # before any worker can have started
    launcher.communicate(timeout=60)
    assert launcher.returncode == -sig  # as torchrun, which dies by the signal
    assert wait_until_gone(mark, 2.0) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_while_waiting_in_rendezvous_kills_the_launcher_by_that_signal(
    mark: str, tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    flags = ["--nnodes=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}"]
    launcher = _start_sleepers(mark, tmp_path, flags)
    wait_listening("127.0.0.1", port)  # well past start-up: waiting for the second node
    time.sleep(0.3)
    launcher.send_signal(sig)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == -sig, err
    assert "Traceback" not in err
    assert wait_until_gone(mark, 2.0) == []


def test_worker_ignoring_sigterm_is_killed_after_the_grace(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark, PID_DIR=str(tmp_path), IGNORE_TERM="1")
    launcher = start_rallypoint(["--shutdown-timeout=1", str(WORKERS / "sleeper.py")], env)
    _wait_for_pids(tmp_path, 1)
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert "did not stop within 1.0 s of SIGTERM; sending SIGKILL" in err
    assert wait_until_gone(mark, 2.0) == []


def test_sigkill_of_the_launcher_takes_workers_and_grandchildren(mark: str, tmp_path: Path) -> None:
    launcher = _start_sleepers(mark, tmp_path)
    _wait_for_pids(tmp_path, 2)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.communicate(timeout=10)
    killed_at = time.monotonic()
    assert wait_until_gone(mark, 2.0) == []
    assert time.monotonic() - killed_at < 2.0


@pytest.mark.parametrize(
    ("sig", "flags"),
    [
        (signal.SIGHUP, []),
        (signal.SIGINT, []),
        (signal.SIGUSR1, ["--signals-to-handle=SIGUSR1"]),
    ],
)
def test_the_same_signal_is_forwarded(
    mark: str, tmp_path: Path, sig: signal.Signals, flags: list[str]
) -> None:
    env = launcher_env(mark, PID_DIR=str(tmp_path))
    launcher = start_rallypoint(
        ["--nproc-per-node=2", *flags, str(WORKERS / "signal_recorder.py")], env
    )
    _wait_for_pids(tmp_path, 2)
    launcher.send_signal(sig)
    launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert {(tmp_path / f"signal_{r}").read_text() for r in (0, 1)} == {sig.name}
