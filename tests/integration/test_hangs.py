"""Hangs found, not guessed: real gloo ranks under the launcher, stacks from the bootstrap.

``tests/workers/gloo_hang.py`` runs two gloo ranks where rank 1 misbehaves.
Timing bounds are generous (the machine is shared); measured figures are
printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = [pytest.mark.integration, pytest.mark.torch, pytest.mark.slow]

SCRIPT = WORKERS / "gloo_hang.py"
LINES = SCRIPT.read_text().splitlines()
SLACK = 30.0  # seconds of scheduling noise allowed on top of the detector's own bound


def line_of(text: str) -> int:
    """The 1-based line of the script that contains ``text``."""
    return next(i for i, line in enumerate(LINES, 1) if text in line)


def run(mode: str, tmp_path: Path, mark: str, *flags: str, **env: str) -> tuple[int, str, Path]:
    logs = tmp_path / "logs"
    args = ["--nproc-per-node=2", f"--log-dir={logs}", *flags, str(SCRIPT)]
    result = rallypoint(args, launcher_env(mark, HANG_MODE=mode, **env), timeout=240)
    return result.returncode, result.stderr, logs


def headline(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("rallypoint: rank"))


def test_stalled_rank_is_named_with_its_function_and_line(tmp_path: Path, mark: str) -> None:
    stall_mark = tmp_path / "stalled_at"
    code, stderr, logs = run(
        "stall", tmp_path, mark, "--hang-timeout=5", "--stack-period=1", STALL_MARK=str(stall_mark)
    )
    ended = time.time()
    assert code == 1, stderr
    took = ended - float(stall_mark.read_text())
    print(f"stall to launcher exit: {took:.1f} s (hang timeout 5 s, sample period 1 s)")
    assert took < 5 + 1 + SLACK, stderr
    first = headline(stderr)
    stall_line = line_of("time.sleep(STALL)")
    pattern = r"rallypoint: rank 1 \(local 1\) on \S+ hung: stuck \d+ s in load_batch"
    assert re.match(pattern, first), stderr
    assert f"in load_batch at {SCRIPT}:{stall_line};" in first, stderr
    assert f"rank 0 in all_reduce at {SCRIPT}:{line_of('dist.all_reduce(batch)')}" in first
    report = json.loads(next(logs.glob("*/failure.json")).read_text())
    assert report["culprit"]["hung"] is True
    assert f"line {stall_line} in load_batch" in report["culprit"]["stack"]
    events = next(logs.glob("*/events.jsonl")).read_text().splitlines()
    [found] = [e for e in map(json.loads, events) if e["kind"] == "hang_found"]
    assert found["culprits"] == [1]
    assert found["verdict"] == "stall"
    assert "load_batch" in found["stacks"]["1"]
    assert "all_reduce" in found["stacks"]["0"]


def test_one_off_stall_restarts_and_finishes(tmp_path: Path, mark: str) -> None:
    code, stderr, _ = run(
        "stall", tmp_path, mark, "--hang-timeout=5", "--stack-period=1", "--max-restarts=1"
    )
    assert code == 0, stderr
    assert "hung: stuck" in stderr
    assert "restarting the workers (restart 1 of 1)" in stderr


def test_mismatched_collectives_are_named_as_such(tmp_path: Path, mark: str) -> None:
    code, stderr, _ = run("mismatch", tmp_path, mark, "--hang-timeout=5", "--stack-period=1")
    assert code == 1, stderr
    first = headline(stderr)
    assert "(mismatched collectives)" in first
    assert "in broadcast at" in first
    assert "in all_reduce at" in first


def test_one_long_c_call_within_the_timeout_is_not_a_hang(tmp_path: Path, mark: str) -> None:
    code, stderr, logs = run(
        "long_call", tmp_path, mark, "--hang-timeout=20", "--stack-period=1", STALL_SECONDS="8"
    )
    assert code == 0, stderr
    assert "hung" not in stderr
    events = next(logs.glob("*/events.jsonl")).read_text()
    assert "hang_found" not in events


def test_a_null_dereference_shows_its_python_stack(tmp_path: Path, mark: str) -> None:
    code, stderr, logs = run("segv", tmp_path, mark)
    assert code == 1, stderr
    assert "failed first: signal SIGSEGV" in headline(stderr)
    assert "Python stack at Segmentation fault (most recent call first):" in stderr
    assert f'File "{SCRIPT}", line {line_of("ctypes.string_at(0)")} in deref_null' in stderr
    report = json.loads(next(logs.glob("*/failure.json")).read_text())
    assert "in deref_null" in report["culprit"]["stack"]
    assert "in load_batch" in report["culprit"]["stack"]
