"""Exit codes and restarts, with real worker processes (contract §3.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = pytest.mark.integration


def test_rank_exiting_3_gives_exit_1_without_restart(mark: str) -> None:
    env = launcher_env(mark, FAIL_RANKS="1", EXIT_CODE="3")
    result = rallypoint(["--nproc-per-node=2", str(WORKERS / "exit_code.py")], env)
    assert result.returncode == 1
    first = next(line for line in result.stderr.splitlines() if "failed first" in line)
    assert first.startswith("rallypoint: rank 1 (local 1) on ")
    assert "failed first: exit 3 after" in first
    assert "restarting" not in result.stderr
    assert "Root Cause (first observed failure):" in result.stderr
    assert "exitcode  : 3 (pid: " in result.stderr


def test_failure_on_first_attempt_only_recovers(mark: str, tmp_path: Path) -> None:
    log = tmp_path / "attempts.log"
    env = launcher_env(mark)
    args = ["--max-restarts=2", str(WORKERS / "fail_first_attempt.py"), str(log)]
    result = rallypoint(args, env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["0:0", "0:1"]


def test_exhausted_restarts_give_exit_1_after_three_attempts(mark: str, tmp_path: Path) -> None:
    log = tmp_path / "attempts.log"
    env = launcher_env(mark, ALWAYS_FAIL="1")
    args = [
        "--max-restarts=2",
        "--nproc-per-node=2",
        str(WORKERS / "fail_first_attempt.py"),
        str(log),
    ]
    result = rallypoint(args, env)
    assert result.returncode == 1
    # a rank may be stopped before it writes, once its sibling failed first
    counts = {line.split(":")[1] for line in log.read_text().split()}
    assert counts == {"0", "1", "2"}
    assert result.stderr.count("restarting the workers") == 2


def test_traceback_without_record_reaches_the_summary(mark: str) -> None:
    result = rallypoint(["--standalone", str(WORKERS / "raise_error.py")], launcher_env(mark))
    assert result.returncode == 1
    headline = next(line for line in result.stderr.splitlines() if "failed first" in line)
    assert headline.endswith("ValueError: bad shape (3, 4)")
    summary = result.stderr.split("Root Cause (first observed failure):")[1]
    assert "about to fail" in summary
    assert 'raise ValueError("bad shape (3, 4)")' in summary


def test_success_exits_0_and_leaves_nothing(mark: str) -> None:
    result = rallypoint(
        ["--nproc-per-node=3", str(WORKERS / "exit_code.py")], launcher_env(mark, FAIL_RANKS="none")
    )
    assert result.returncode == 0, result.stderr
