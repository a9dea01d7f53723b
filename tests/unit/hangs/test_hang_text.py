"""What a person reads about a hang and a crash: headline, summary block, warning."""

from __future__ import annotations

import signal

from rallypoint.cli.output import format_summary
from rallypoint.failures.report import FailureReport, WorkerFailure, hang_message, hang_warning
from rallypoint.hangs.dump import Frame
from rallypoint.hangs.verdict import Group, Verdict, VerdictKind
from rallypoint.workers.exit_status import ExitStatus

STEP = Frame("/t/train.py", 35, "step")
LOAD = Frame("/t/train.py", 12, "load_batch")


def stall() -> Verdict:
    culprit = Group((1,), None, LOAD, 7.4)
    waiting = Group((0, 2, 3), "all_reduce", STEP, 9.0)
    return Verdict(VerdictKind.STALL, (culprit,), (waiting,))


def test_stall_names_the_culprit_and_those_waiting() -> None:
    assert hang_message(stall(), 1) == (
        "hung: stuck 7 s in load_batch at /t/train.py:12; ranks 0, 2, 3 in all_reduce at "
        "/t/train.py:35"
    )


def test_mismatch_and_all_waiting_say_so() -> None:
    a = Group((0,), "all_reduce", STEP, 6.0)
    b = Group((1,), "broadcast", Frame("/t/train.py", 33, "step"), 6.0)
    mismatch = hang_message(Verdict(VerdictKind.MISMATCH, (a, b), ()), 1)
    assert mismatch == (
        "hung: stuck 6 s in broadcast at /t/train.py:33 (mismatched collectives); "
        "rank 0 in all_reduce at /t/train.py:35"
    )
    everyone = hang_message(Verdict(VerdictKind.ALL_WAITING, (), (a,)), 0)
    assert "every rank waits in the same collective" in everyone


def test_many_ranks_are_folded() -> None:
    waiting = Group(tuple(range(1, 1000)), "all_reduce", STEP, 9.0)
    verdict = Verdict(VerdictKind.STALL, (Group((0,), None, LOAD, 8.0),), (waiting,))
    assert "ranks 1, 2, 3, 4, 5, 6, 7, 8 and 991 more in all_reduce" in hang_message(verdict, 0)


def test_hung_culprit_heads_the_summary_with_its_stack() -> None:
    stack = 'Python stack when found hung (most recent call first):\n  File "/t/train.py", line 12'
    hung = WorkerFailure.build(
        (1, 1, 101),
        ExitStatus(signal=signal.SIGKILL),
        (1010.0, 12.0),
        "",
        None,
        "",
        cause=hang_message(stall(), 1),
        stack=stack,
        hung=True,
    )
    report = FailureReport.from_failures("train.py", "host-a", [hung], [])
    text = format_summary(report, None)
    assert text.splitlines()[0] == (
        "rallypoint: rank 1 (local 1) on host-a hung: stuck 7 s in load_batch at "
        "/t/train.py:12; ranks 0, 2, 3 in all_reduce at /t/train.py:35"
    )
    assert "rallypoint: rank 1 (local 1): Python stack when found hung" in text.split("=====")[-1]
    assert report.to_json()["culprit"]["stack"] == stack  # type: ignore[index]


def test_crash_stack_shows_beside_the_stderr_tail() -> None:
    crashed = WorkerFailure.build(
        (0, 0, 100),
        ExitStatus(signal=signal.SIGSEGV),
        (1010.0, 3.0),
        "",
        None,
        "some output",
        stack="Python stack at Segmentation fault (most recent call first):\n  File ...",
    )
    text = format_summary(FailureReport.from_failures("t.py", "h", [crashed], []), None)
    assert "failed first: signal SIGSEGV" in text.splitlines()[0]
    assert "  traceback : some output" in text
    tail = text.split("=====")[-1]  # after torchrun's block, which stays torchrun's
    assert "rallypoint: rank 0 (local 0): Python stack at Segmentation fault" in tail


def test_report_only_warning_groups_identical_stacks() -> None:
    stacks = {0: "in all_reduce", 2: "in all_reduce", 3: "in all_reduce", 1: "in load_batch"}
    text = hang_warning((1,), stall(), stacks)
    assert text.splitlines()[0].startswith("rank 1 looks hung: stuck 7 s in load_batch at")
    assert "(reported only; with --hang-timeout" in text.splitlines()[0]
    assert "ranks 0, 2, 3:\nin all_reduce" in text
    assert "rank 1:\nin load_batch" in text


def test_a_rank_that_fails_after_another_nodes_announced_hang_names_that_culprit_first() -> None:
    gone = WorkerFailure.build(
        (0, 0, 100), ExitStatus(code=1), (1011.0, 12.5), "", None, "RuntimeError: closed by peer"
    )
    culprit = "rank 1 (local 0) on host-b hung: stuck 5 s in load_batch at /t/train.py:12"
    report = FailureReport.from_failures("train.py", "host-a", [gone], [], elsewhere=culprit)
    assert report.headline == (f"{culprit}; rank 0 (local 0) on host-a failed after it: exit 1")
    assert format_summary(report, None).splitlines()[0] == f"rallypoint: {report.headline}"
    alone = FailureReport.from_failures("train.py", "host-a", [gone], [])
    assert alone.headline.startswith("rank 0 (local 0) on host-a failed first")
