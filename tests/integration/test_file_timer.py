"""torch's elastic file timers: an overrunning worker is killed, named, and restarted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = [pytest.mark.integration, pytest.mark.torch]

OVERDUE = re.compile(r"elastic timer 'slow_step' expired: killed (\d+\.\d+) s past its deadline")


@pytest.mark.parametrize("where", ["given", "made"])
def test_an_overrunning_worker_is_killed_named_and_restarted(
    mark: str, tmp_path: Path, where: str
) -> None:
    out, temp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    temp.mkdir()
    pipe = tmp_path / "timer.pipe"
    extra = {"TORCHELASTIC_TIMER_FILE": str(pipe)} if where == "given" else {}
    env = launcher_env(
        mark, OUT_DIR=str(out), TMPDIR=str(temp), TORCHELASTIC_ENABLE_FILE_TIMER="1", **extra
    )
    args = ["--nproc-per-node=2", "--max-restarts=1", str(WORKERS / "timer_overrun.py")]
    result = rallypoint(args, env)
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0_0", "0_1", "1_0", "1_1"]
    assert "restarting the workers (restart 1 of 1)" in result.stderr
    overdue = [float(x) for x in OVERDUE.findall(result.stderr)]
    print(f"killed past the deadline (s): {overdue}")
    assert len(overdue) >= 2, result.stderr  # the restart's line and the final summary
    assert max(overdue) < 1.0  # generous: the timer fires at the deadline itself
    report = re.search(r"failure report written to (\S+)", result.stderr)
    assert report, result.stderr
    exited = json.loads(Path(report[1]).read_text())["culprit"]["exited_at"]
    late = exited - float((out / "1_0").read_text())
    print(f"the worker's exit came {late:.3f} s after its deadline")
    assert 0 <= late < 1.0
    assert "failed first: signal SIGKILL" in result.stderr
    assert "Stopped by rallypoint" in result.stderr  # rank 1 kept within its timers
    assert "rank 1 (local 1) on" not in result.stderr
    assert not pipe.exists()
    assert list(temp.iterdir()) == [] or not list(temp.glob("watchdog_timer_*"))


def test_timers_stay_off_unless_enabled(mark: str, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text("import os\nassert 'TORCHELASTIC_TIMER_FILE' not in os.environ\n")
    result = rallypoint([str(script)], launcher_env(mark, TMPDIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("watchdog_timer_*"))
