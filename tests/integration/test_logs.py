"""Redirects, tee, rank filters and the log folder layout, with real workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = pytest.mark.integration

CHATTY = str(WORKERS / "chatty.py")


def attempt_files(log_dir: Path, attempt: int = 0) -> Path:
    (run,) = log_dir.iterdir()
    return run / f"attempt_{attempt}"


def test_tee_prefixes_lines_and_keeps_streams(mark: str, tmp_path: Path) -> None:
    args = ["--nproc-per-node=2", f"--log-dir={tmp_path}", "--tee=3", CHATTY]
    result = rallypoint(args, launcher_env(mark))
    assert result.returncode == 0, result.stderr
    out = sorted(result.stdout.splitlines())
    assert out == [
        "[default0]:out 0 0",
        "[default0]:out 0 1",
        "[default1]:out 1 0",
        "[default1]:out 1 1",
    ]
    assert "[default1]:err 1 1" in result.stderr.splitlines()
    folder = attempt_files(tmp_path)
    assert (folder / "0" / "stdout.log").read_text() == "out 0 0\nout 0 1\n"
    assert (folder / "1" / "stderr.log").read_text() == "err 1 0\nerr 1 1\n"


def test_redirect_sends_to_files_only(mark: str, tmp_path: Path) -> None:
    args = ["--nproc-per-node=2", f"--log-dir={tmp_path}", "--redirects=0:1,1:2", CHATTY]
    result = rallypoint(args, launcher_env(mark))
    assert result.returncode == 0, result.stderr
    assert "out 0 0" not in result.stdout
    assert "out 1 0" in result.stdout
    assert "err 1 0" not in result.stderr
    assert "err 0 0" in result.stderr
    folder = attempt_files(tmp_path)
    assert (folder / "0" / "stdout.log").read_text() == "out 0 0\nout 0 1\n"
    assert (folder / "1" / "stderr.log").read_text() == "err 1 0\nerr 1 1\n"


def test_prefix_template(mark: str, tmp_path: Path) -> None:
    env = launcher_env(
        mark, TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE="[${role_name}|${rank}|${local_rank}]"
    )
    args = ["--nproc-per-node=2", "--role=trainer", f"--log-dir={tmp_path}", "-t", "1", CHATTY]
    result = rallypoint(args, env)
    assert "[trainer|1|1]out 1 0" in result.stdout.splitlines()


def test_filtered_rank_keeps_its_output_in_a_file(mark: str, tmp_path: Path) -> None:
    args = ["--nproc-per-node=2", f"--log-dir={tmp_path}", "--local-ranks-filter=1", CHATTY]
    result = rallypoint(args, launcher_env(mark))
    assert result.returncode == 0, result.stderr
    assert "out 0 0" not in result.stdout
    assert "out 1 1" in result.stdout
    assert (attempt_files(tmp_path) / "0" / "stdout.log").read_text() == "out 0 0\nout 0 1\n"


def test_last_line_without_newline_is_delivered(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark, NO_NEWLINE="1")
    result = rallypoint([f"--log-dir={tmp_path}", "-t", "3", CHATTY], env)
    assert "[default0]:last 0" in result.stdout.splitlines()
    assert (attempt_files(tmp_path) / "0" / "stdout.log").read_text().endswith("out 0 1\nlast 0")


def test_every_line_once_and_in_order(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark, COUNT="20000")
    result = rallypoint(["--nproc-per-node=2", f"--log-dir={tmp_path}", "-t", "3", CHATTY], env)
    assert result.returncode == 0
    for rank in (0, 1):
        prefix = f"[default{rank}]:"
        mine = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
        assert mine == [f"{prefix}out {rank} {i}" for i in range(20000)]
    assert all(line.startswith("[default") for line in result.stdout.splitlines())


def test_restart_keeps_earlier_attempt_logs(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark)
    logs = tmp_path / "logs"
    args = [
        "--max-restarts=1",
        f"--log-dir={logs}",
        "-r",
        "3",
        str(WORKERS / "fail_first_attempt.py"),
        str(tmp_path / "count.log"),
    ]
    result = rallypoint(args, env)
    assert result.returncode == 0, result.stderr
    assert (attempt_files(logs, 0) / "0" / "stderr.log").exists()
    assert (attempt_files(logs, 1) / "0" / "stderr.log").exists()


def test_event_log_records_each_restart(mark: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = launcher_env(mark, ALWAYS_FAIL="1")
    args = [
        "--max-restarts=2",
        f"--log-dir={logs}",
        "--event-log-handler=console",
        str(WORKERS / "fail_first_attempt.py"),
        str(tmp_path / "count.log"),
    ]
    result = rallypoint(args, env)
    assert result.returncode == 1
    (run,) = logs.iterdir()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("worker_started") == 3
    assert kinds.count("worker_exited") == 3
    assert [e["restart"] for e in events if e["kind"] == "group_restarting"] == [1, 2]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_failed"
    assert all(e["run_id"] == events[0]["run_id"] for e in events)
    assert result.stderr.count("[rallypoint event] ") == len(events)
    report = json.loads((run / "failure.json").read_text())
    assert report["culprit"]["rank"] == 0
    assert f"failure report written to {run / 'failure.json'}" in result.stderr


def test_duplicate_filters_copy_matching_teed_lines(mark: str, tmp_path: Path) -> None:
    args = [
        "--nproc-per-node=2",
        f"--log-dir={tmp_path}",
        "-t",
        "3",
        "--duplicate-stdout-filters=out 1,,x,out 0 1",
        "--duplicate-stderr-filters=err 0",
        CHATTY,
    ]
    result = rallypoint(args, launcher_env(mark))
    assert result.returncode == 0, result.stderr
    folder = attempt_files(tmp_path)
    filtered_out = (folder / "filtered_stdout.log").read_text().splitlines()
    assert sorted(filtered_out) == ["[default0]:out 0 1"]  # prefixed, as torchrun writes them
    assert sorted((folder / "filtered_stderr.log").read_text().splitlines()) == [
        "[default0]:err 0 0",
        "[default0]:err 0 1",
    ]


def test_launcher_error_file_gets_the_root_cause(mark: str, tmp_path: Path) -> None:
    own = tmp_path / "launcher_error.json"
    env = launcher_env(mark, TORCHELASTIC_ERROR_FILE=str(own))
    result = rallypoint([str(WORKERS / "raise_error.py")], env)
    assert result.returncode == 1
    message = json.loads(own.read_text())["message"]
    assert message["message"] == "ValueError: bad shape (3, 4)"
    assert message["errorCode"] == 1
    assert "about to fail" in message["extraInfo"]["py_callstack"]
