"""What ``rallypoint status`` prints for each rank state, and stacks grouped by text."""

from __future__ import annotations

from pathlib import Path

import pytest

from rallypoint.cli.main import is_status_command
from rallypoint.cli.output import status_text


def test_each_state_and_identical_stacks_once() -> None:
    ranks = [
        {
            "rank": 0,
            "node": "a",
            "pid": 7,
            "state": "running",
            "unchanged_for": 2.0,
            "last_output": "step 9",
            "has_stacks": True,
            "stack": "S",
        },
        {
            "rank": 1,
            "node": "a",
            "pid": 8,
            "state": "running",
            "unchanged_for": 41.0,
            "stuck": True,
            "last_output": "",
            "has_stacks": True,
            "stack": "S",
        },
        {"rank": 2, "node": "b", "state": "exited", "exit": "exitcode 1", "has_stacks": True},
        {"rank": 3, "node": "b", "pid": 9, "state": "running", "has_stacks": False},
    ]
    snap = {"run_id": "j", "round": 2, "members": 2, "restarts": 1, "ranks": ranks}
    text = status_text([snap], stacks=True)
    lines = text.splitlines()
    assert lines[0] == "job j: round 2, 2 members, restarts 1"
    assert (
        lines[1]
        == "  rank 0 (node a, pid 7): running (stack unchanged for 2 s); last output: step 9"
    )
    assert lines[2] == "  rank 1 (node a, pid 8): stuck for 41 s; last output: <none>"
    assert lines[3] == "  rank 2 (node b): exited (exitcode 1)"
    assert lines[4] == "  rank 3 (node b, pid 9): running"
    assert lines[5:] == [
        "stacks:",
        "ranks 0, 1:",
        "  S",
        "rank 2:",
        "  no stack sampled yet",
        "rank 3:",
        "  no stacks: a --no-python worker",
    ]
    assert "stacks:" not in status_text([snap], stacks=False)


def test_status_is_ours_only_first_and_without_such_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_status_command(["status", "--stacks"])
    assert not is_status_command(["status.py"])
    assert not is_status_command(["--nproc-per-node=2", "status"])
    (tmp_path / "status").write_text("print(1)\n")
    assert not is_status_command(["status"])


def test_standbys_are_listed_after_the_ranks_with_their_memory() -> None:
    snap = {
        "run_id": "j",
        "round": 0,
        "members": 1,
        "ranks": [{"rank": 0, "node": "a", "pid": 7, "state": "running"}],
        "standbys": [
            {"local_rank": 0, "pid": 9, "rss_kib": 220 * 1024, "ready": True},
            {"local_rank": 1, "pid": 10, "rss_kib": None, "ready": False},
            {"local_rank": 2, "pid": 11, "rss_kib": 30 * 1024, "ready": False},
        ],
    }
    lines = status_text([snap], stacks=False).splitlines()
    assert lines[-3:] == [
        "  standby local rank 0: pid 9, 220 MiB resident, ready",
        "  standby local rank 1: pid 10, gone",
        "  standby local rank 2: pid 11, 30 MiB resident, importing",
    ]
    assert lines[1].startswith("  rank 0 (node a, pid 7)")
