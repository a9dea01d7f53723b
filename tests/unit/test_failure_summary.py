"""The failure report and its summary text."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from rallypoint.cli.output import format_summary
from rallypoint.failures.error_file import exception_document, read_error_file, write_error_file
from rallypoint.failures.record import record
from rallypoint.failures.report import FailureReport, WorkerFailure
from rallypoint.workers.exit_status import ExitStatus


def failure(rank: int, at: float, status: ExitStatus, tail: str = "") -> WorkerFailure:
    return WorkerFailure.build((rank, rank, 100 + rank), status, (at, at - 1000.0), "", None, tail)


def test_culprit_is_the_first_in_time_and_stopped_ranks_are_apart() -> None:
    late = failure(2, 1010.5, ExitStatus(code=1), "Traceback...\nRuntimeError: peer gone")
    first = failure(1, 1010.2, ExitStatus(code=3), "Traceback...\nValueError: bad shape")
    stopped = failure(0, 1011.0, ExitStatus(signal=signal.SIGTERM))
    report = FailureReport.from_failures("train.py", "host-a", [late, first], [stopped])
    assert report.culprit is first
    assert report.headline == (
        "rank 1 (local 1) on host-a failed first: exit 3 after 10.2 s: ValueError: bad shape"
    )
    text = format_summary(report, "/x/failure.json")
    root = text.split("Root Cause (first observed failure):")[1]
    assert "rank      : 1 (local_rank: 1)" in root
    assert "exitcode  : 3 (pid: 101) " in root
    assert "Stopped by rallypoint" in text
    assert "rank 0 (local_rank: 0, pid 100)" in text
    assert text.splitlines()[0] == f"rallypoint: {report.headline}"
    assert json.loads(json.dumps(report.to_json()))["culprit"]["rank"] == 1


def test_signal_death_without_output_is_described() -> None:
    report = FailureReport.from_failures(
        "x", "h", [failure(0, 5.0, ExitStatus(signal=signal.SIGSEGV))], []
    )
    assert "signal SIGSEGV" in report.headline
    assert "Signal 11 (SIGSEGV) received by PID 100" in report.headline
    assert "exitcode  : -11 (pid: 100)  (SIGSEGV)" in format_summary(report, None)


def test_identical_tracebacks_are_shown_once() -> None:
    same = "Traceback\nValueError: same"
    fails = [failure(r, 10.0 + r, ExitStatus(code=1), same) for r in range(8)]
    text = format_summary(FailureReport.from_failures("x", "h", fails, []), None)
    assert text.count("ValueError: same") == 2  # headline and root block
    assert "ranks 1, 2, 3, 4, 5, 6, 7 failed with the same traceback" in text


def test_record_writes_torchruns_error_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "err" / "error.json"

    @record
    def boom() -> None:
        raise KeyError("missing")

    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    with pytest.raises(KeyError):
        boom()
    content = read_error_file(str(path))
    assert content is not None
    assert content.message == "KeyError: 'missing'"
    assert 'raise KeyError("missing")' in content.traceback
    assert content.timestamp > 0


def test_record_treats_exit_0_as_success() -> None:
    @record
    def done() -> None:
        raise SystemExit(0)

    assert done() is None


def test_error_file_round_trip_and_junk(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    write_error_file(str(path), exception_document(ValueError("v"), now=12.9))
    content = read_error_file(str(path))
    assert content is not None
    assert (content.message, content.timestamp) == ("ValueError: v", 12)
    path.write_text("not json")
    assert read_error_file(str(path)) is None
    assert read_error_file(str(tmp_path / "missing.json")) is None
