"""Notice signals (--forward-signals): real workers get them once, and the job goes on."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, start_rallypoint
from tests.harness import wait_until

pytestmark = pytest.mark.integration
TAKER = str(WORKERS / "notice_taker.py")


def wait_ready(folder: Path, count: int, timeout: float = 30) -> None:
    wait_until(lambda: len(list(folder.glob("*.ready"))) >= count, timeout, "workers ready")


def received(folder: Path) -> dict[str, list[str]]:
    """Per rank: the signals it logged, and the sender's pid."""
    return {p.stem: p.read_text().splitlines() for p in sorted(folder.glob("*.log"))}


def start(mark: str, folder: Path, flags: list[str], **env: str) -> subprocess.Popen[str]:
    records = folder / "records"
    records.mkdir()
    full = launcher_env(mark, RECORD_DIR=str(records), **env)
    args = ["--nproc-per-node=2", f"--log-dir={folder / 'logs'}", *flags, TAKER]
    launcher = start_rallypoint(args, full)
    wait_ready(records, 2)
    return launcher


def test_a_notice_reaches_every_worker_once_and_the_job_succeeds(mark: str, tmp_path: Path) -> None:
    launcher = start(mark, tmp_path, ["--forward-signals=SIGUSR1"], NOTICE_THEN_EXIT="1")
    launcher.send_signal(signal.SIGUSR1)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, err
    assert received(tmp_path / "records") == {r: [f"SIGUSR1 {launcher.pid}"] for r in ("0", "1")}
    assert "received SIGUSR1: passed on to 2 workers as a notice" in err
    assert "notices passed on during the run: SIGUSR1 at " in err
    lines = next(tmp_path.glob("logs/*/events.jsonl")).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    notices = [e for e in events if e["kind"] == "notice_forwarded"]
    assert [(e["signal"], e["workers"]) for e in notices] == [("SIGUSR1", 2)]


def test_a_notice_then_sigterm_stops_as_torchrun(mark: str, tmp_path: Path) -> None:
    launcher = start(mark, tmp_path, ["--forward-signals=SIGUSR1,SIGUSR2"])
    launcher.send_signal(signal.SIGUSR2)
    records = tmp_path / "records"
    wait_until(lambda: sum(map(len, received(records).values())) >= 2, 30, "two signals logged")
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1, err
    want = [f"SIGUSR2 {launcher.pid}", f"SIGTERM {launcher.pid}"]
    assert received(tmp_path / "records") == {"0": want, "1": want}
    assert "received SIGTERM: the workers were stopped" in err
    assert "SIGUSR2 at " in err


def test_under_a_slurm_step_usr1_is_a_notice_by_default(mark: str, tmp_path: Path) -> None:
    slurm = {
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_ID": "0",
        "SLURM_NODEID": "0",
        "SLURM_STEP_NUM_NODES": "1",
        "SLURM_STEP_NODELIST": "localhost",
    }
    launcher = start(mark, tmp_path, [], NOTICE_THEN_EXIT="1", **slurm)
    launcher.send_signal(signal.SIGUSR1)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, err
    assert "running as a Slurm step task, so using --nnodes=1" in err
    assert received(tmp_path / "records") == {r: [f"SIGUSR1 {launcher.pid}"] for r in ("0", "1")}


def test_without_forward_signals_usr1_ends_the_launcher_as_torchrun(
    mark: str, tmp_path: Path
) -> None:
    launcher = start(mark, tmp_path, [])
    launcher.send_signal(signal.SIGUSR1)
    launcher.communicate(timeout=60)
    assert launcher.returncode == -signal.SIGUSR1


def test_no_thread_of_rallypoint_inside_a_worker_takes_its_signals(mark: str) -> None:
    """A worker that blocks USR1 to sigwait for it must not die of one its sampler got."""
    from tests.conftest import rallypoint

    done = rallypoint(
        ["--standalone", "--stack-period=0.1", str(WORKERS / "thread_masks.py")], launcher_env(mark)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["blocks"]
