"""The supervisor as the policy's driver: a fake rendezvous, fake workers, a fake clock."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import TypeVar

import pytest

from rallypoint.agent.job import Job
from rallypoint.agent.supervisor import Supervisor
from rallypoint.config import Entrypoint, EntrypointKind, LaunchConfig
from rallypoint.errors import (
    ChildFailedError,
    RendezvousClosedError,
    RendezvousLostError,
    SignalReceived,
)
from rallypoint.rendezvous.machine import Change
from tests.fakes import (
    FakeAttempt,
    FakeAttempts,
    FakeClock,
    FakeRendezvous,
    JobStore,
    result,
    send_signal,
)

T = TypeVar("T")


def job(max_restarts: int = 1, notices: str = "") -> Job:
    config = LaunchConfig(
        1,
        1,
        2,
        run_id="t",
        max_restarts=max_restarts,
        shutdown_timeout=5,
        log_dir=os.devnull,
        forward_signals=notices,
    )
    return Job(config, Entrypoint(EntrypointKind.BINARY, "train.py"), {}, host="node-a")


class Node:
    """A supervisor with its fakes."""

    def __init__(
        self,
        max_restarts: int = 1,
        shared: JobStore | None = None,
        clock: FakeClock | None = None,
        notices: str = "",
    ) -> None:
        self.clock = clock or FakeClock()
        self.rendezvous = FakeRendezvous(shared)
        self.attempts = FakeAttempts(self.clock)
        self.early: list[int] = []
        self.supervisor = Supervisor(
            job(max_restarts, notices),
            self.clock,
            early_signals=self.early,
            rendezvous=self.rendezvous,
            attempts=self.attempts.bind,
        )

    def then(self, number: int, act: Callable[[FakeAttempt], None]) -> None:
        """Once attempt ``number`` has started, do ``act`` to it (on the loop)."""
        previous = self.attempts.on_start

        def on_start(attempt: FakeAttempt) -> None:
            previous(attempt)
            if attempt.number == number:
                asyncio.get_running_loop().call_soon(act, attempt)

        self.attempts.on_start = on_start

    def run(self) -> object:
        return run_fast(self.clock, self.supervisor.run())


def run_fast(clock: FakeClock, work: Coroutine[object, object, T]) -> T:
    """Run ``work`` under the clock's autojump; it must take well under a second of real time."""

    async def main() -> T:
        async with clock.autojump():
            return await asyncio.wait_for(work, 5.0)

    started = time.monotonic()
    try:
        return asyncio.run(main())
    finally:
        assert time.monotonic() - started < 2.0


def succeed(attempt: FakeAttempt) -> None:
    attempt.exit(0, 0)
    attempt.exit(1, 0)


def fail(attempt: FakeAttempt) -> None:
    attempt.exit(1, 3)


def test_success_finishes_and_leaves() -> None:
    node = Node()
    node.then(0, succeed)
    outcome = node.run()
    assert outcome.restarts == 0  # type: ignore[attr-defined]
    assert node.rendezvous.finished
    assert node.rendezvous.closed
    assert node.attempts.started[0].stops == [(signal.SIGTERM, 5.0)]


def test_a_failure_restarts_once_then_the_budget_is_spent() -> None:
    node = Node(max_restarts=1)
    node.then(0, fail)
    node.then(1, fail)
    with pytest.raises(ChildFailedError) as raised:
        node.run()
    report = raised.value.report
    assert report.culprit.local_rank == 1
    assert [f.local_rank for f in report.stopped] == [0]
    assert node.rendezvous.shared.restarts == 2
    assert node.rendezvous.job_closed == (False, report.headline)
    assert [a.stops for a in node.attempts.started] == [[(signal.SIGTERM, 30.0)]] * 2


def test_a_restart_then_success() -> None:
    node = Node(max_restarts=3)
    node.then(0, fail)
    node.then(1, succeed)
    outcome = node.run()
    assert outcome.restarts == 1  # type: ignore[attr-defined]
    assert len(node.attempts.started) == 2


def test_exits_queued_together_are_all_failures() -> None:
    node = Node(max_restarts=0)

    def both(attempt: FakeAttempt) -> None:
        attempt.exit(1, 3)
        attempt.exit(0, -int(signal.SIGSEGV))

    node.then(0, both)
    with pytest.raises(ChildFailedError) as raised:
        node.run()
    assert sorted(f.local_rank for f in raised.value.report.failures) == [0, 1]
    assert raised.value.report.stopped == ()


def test_a_stubborn_worker_gets_the_whole_grace_on_the_fake_clock() -> None:
    node = Node(max_restarts=0)

    def stubborn_then_fail(attempt: FakeAttempt) -> None:
        attempt.stubborn.add(0)
        fail(attempt)

    node.then(0, stubborn_then_fail)
    start = node.clock.monotonic()
    with pytest.raises(ChildFailedError):
        node.run()
    assert node.clock.monotonic() - start >= 30.0  # the restart grace, in fake time


def stop_signalled(times: int) -> float:
    """A failure stop with a stubborn worker, ``times`` SIGTERMs into it: how long it took."""
    node = Node(max_restarts=0)

    def stubborn_then_fail(attempt: FakeAttempt) -> None:
        attempt.stubborn.add(0)
        fail(attempt)
        for _ in range(times):
            asyncio.get_running_loop().call_soon(send_signal, signal.SIGTERM)

    node.then(0, stubborn_then_fail)
    start = node.clock.monotonic()
    with pytest.raises(SignalReceived) as raised:
        node.run()
    assert not raised.value.before_workers
    return node.clock.monotonic() - start


def test_a_signal_during_a_failure_stop_keeps_its_grace() -> None:
    """The workers may be handling that signal too (Slurm's linuxproc sends it to them)."""
    assert stop_signalled(1) >= 30.0


def test_a_second_signal_during_a_stop_cuts_the_grace_short() -> None:
    assert stop_signalled(2) < 30.0


def test_an_early_signal_ends_before_any_worker() -> None:
    node = Node()
    node.early.append(int(signal.SIGINT))
    node.rendezvous.autoform = False  # the round never forms
    with pytest.raises(SignalReceived) as raised:
        node.run()
    assert raised.value.signum == signal.SIGINT
    assert raised.value.before_workers
    assert node.attempts.started == []
    assert node.rendezvous.closed


def test_a_signal_during_the_rendezvous_cancels_the_join() -> None:
    node = Node()
    node.rendezvous.autoform = False

    async def later() -> None:
        await node.clock.sleep(3.0)
        send_signal(signal.SIGTERM)

    async def main() -> None:
        asyncio.get_running_loop().create_task(later())
        await node.supervisor.run()

    with pytest.raises(SignalReceived) as raised:
        run_fast(node.clock, main())
    assert raised.value.before_workers
    assert node.rendezvous.joined == 1


def test_a_signal_is_forwarded_to_the_running_workers() -> None:
    node = Node()
    node.then(0, lambda _attempt: send_signal(signal.SIGHUP))
    with pytest.raises(SignalReceived) as raised:
        node.run()
    assert raised.value.signum == signal.SIGHUP
    assert not raised.value.before_workers
    assert node.attempts.started[0].stops == [(signal.SIGHUP, 5.0)]


def test_a_notice_reaches_the_workers_and_the_job_goes_on_to_success() -> None:
    node = Node(notices="SIGUSR1,SIGUSR2")

    def notice_then_succeed(attempt: FakeAttempt) -> None:
        send_signal(signal.SIGUSR1)
        asyncio.get_running_loop().call_later(0.1, succeed, attempt)

    node.then(0, notice_then_succeed)
    assert node.run().restarts == 0  # type: ignore[attr-defined]
    assert node.attempts.started[0].notices == [signal.SIGUSR1]
    assert node.attempts.started[0].stops == [(signal.SIGTERM, 5.0)]  # only the success stop
    assert [(name, count) for name, _, count in node.supervisor.notices] == [("SIGUSR1", 2)]


def test_a_notice_caught_before_the_loop_is_dropped_and_said() -> None:
    node = Node(notices="SIGUSR2")
    node.early.append(int(signal.SIGUSR2))
    node.then(0, succeed)
    node.run()
    assert node.attempts.started[0].notices == []
    assert [(name, count) for name, _, count in node.supervisor.notices] == [("SIGUSR2", 0)]


def test_a_membership_change_restarts_for_free() -> None:
    node = Node(max_restarts=0)
    node.then(0, lambda _a: node.rendezvous.change(Change.RESTART, "node b left the job"))
    node.then(1, succeed)
    node.run()
    assert node.rendezvous.shared.restarts == 0
    assert node.rendezvous.joined == 2


def test_a_late_exit_of_a_previous_attempt_is_ignored() -> None:
    node = Node(max_restarts=1)
    node.then(0, fail)

    def late_then_succeed(attempt: FakeAttempt) -> None:
        first = node.attempts.started[0]
        first.exit(0, 1)  # attempt 0's other worker reports once more, late
        succeed(attempt)

    node.then(1, late_then_succeed)
    node.run()
    assert len(node.attempts.started) == 2


@pytest.mark.parametrize(
    ("change", "error"),
    [(Change.CLOSED, RendezvousClosedError), (Change.LOST, RendezvousLostError)],
)
def test_the_job_ending_elsewhere_stops_the_workers(change: Change, error: type[Exception]) -> None:
    node = Node()
    node.then(0, lambda _a: node.rendezvous.change(change, "it is over"))
    with pytest.raises(error, match="it is over"):
        node.run()
    assert node.attempts.started[0].stops == [(signal.SIGTERM, 30.0)]


def two_nodes(max_restarts: int, *attempts: Callable[[FakeAttempt], None]) -> list[object]:
    """Run two nodes of one job on one loop; each does ``attempts[n]`` to its attempt n."""
    shared, clock = JobStore(), FakeClock()
    nodes = [Node(max_restarts, shared=shared, clock=clock) for _ in range(2)]
    for node in nodes:
        for number, act in enumerate(attempts):
            node.then(number, act)

    async def both() -> list[object]:
        return await asyncio.gather(*(n.supervisor.run() for n in nodes), return_exceptions=True)

    return run_fast(clock, both())


def test_two_nodes_reach_the_budget_at_once() -> None:
    """Both count their failure at once; both are over the budget; both give up."""
    outcomes = two_nodes(0, fail)
    assert all(isinstance(o, ChildFailedError) for o in outcomes), outcomes


def test_the_last_restart_goes_to_one_node_and_the_other_closes_the_job() -> None:
    outcomes = two_nodes(1, fail, lambda _attempt: None)
    kinds = sorted(type(o).__name__ for o in outcomes)
    assert kinds == ["ChildFailedError", "RendezvousClosedError"], outcomes


def test_a_prestarted_attempt_is_adopted_without_joining() -> None:
    node = Node()
    node.attempts.prestarted = True
    node.then(0, succeed)
    node.run()
    assert node.rendezvous.joined == 0
    assert node.attempts.started[0].restart_count == 0


def test_rounds_come_from_the_rendezvous() -> None:
    node = Node()
    node.rendezvous.autoform = False
    node.rendezvous.rounds.put_nowait(result(7, restarts=2))
    node.then(0, succeed)
    assert node.run().restarts == 2  # type: ignore[attr-defined]
