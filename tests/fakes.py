"""Fakes that stand beside the real parts in unit tests: a clock, a rendezvous, workers.

:class:`FakeClock` makes every wait that goes through the injected clock instant:
time moves only when the test says so (:meth:`FakeClock.advance`) or, inside
:meth:`FakeClock.autojump`, whenever every task is waiting, to the next deadline
(Trio's ``MockClock(autojump_threshold=0)`` in spirit).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from rallypoint.agent.job import AgentEvent, WorkerExited
from rallypoint.failures.report import WorkerFailure
from rallypoint.rendezvous.machine import Change, RunningDecision
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.exit_status import ExitStatus
from rallypoint.workers.process import SpawnRequest, WorkerProcess

T = TypeVar("T")
IDLE_SPINS = 50  # loop turns with nothing new before the clock jumps


class FakeClock:
    """A clock whose time moves only when told to, or when everything waits."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1.7e9) -> None:
        self._now = start
        self._offset = wall_offset
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        """The fake time."""
        return self._now

    def wall(self) -> float:
        """The fake time, shifted to look like an epoch time."""
        return self._now + self._offset

    def advance(self, seconds: float) -> None:
        """Move time on, waking every wait whose deadline passed."""
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.done():
                timer.set_result(None)

    def _timer(self, deadline: float) -> asyncio.Future[None]:
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if deadline <= self._now:
            timer.set_result(None)
        else:
            heapq.heappush(self._timers, (deadline, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of fake time have passed."""
        await self._timer(self._now + seconds)

    async def wait_until(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        """Await ``awaitable``; raise TimeoutError once fake time reaches ``deadline``."""
        task = asyncio.ensure_future(awaitable)
        if deadline is None:
            return await task
        timer = self._timer(deadline)
        try:
            await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise TimeoutError
        return task.result()

    def next_deadline(self) -> float | None:
        """The earliest deadline anyone waits for."""
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    @contextlib.asynccontextmanager
    async def autojump(self) -> AsyncIterator[None]:
        """While inside: whenever the loop has been idle a moment, jump to the next deadline."""

        async def jumper() -> None:
            while True:
                for _ in range(IDLE_SPINS):
                    await asyncio.sleep(0)
                deadline = self.next_deadline()
                if deadline is not None:
                    self.advance(deadline - self._now)

        task = asyncio.create_task(jumper())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# --- a rendezvous ---------------------------------------------------------------------------


@dataclass
class JobStore:
    """What several fake nodes of one job share: the restart count and the close."""

    restarts: int = 0
    closed: str | None = None  # the first close wins, as the store's compare-and-set
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def close(self, message: str) -> None:
        if self.closed is None:
            self.closed = message
            for listener in self.listeners:
                listener()


class FakeRendezvous:
    """A rendezvous whose rounds form when the test lets them (``rounds`` queue)."""

    def __init__(self, shared: JobStore | None = None, autoform: bool = True) -> None:
        self.shared = shared or JobStore()
        self.autoform = autoform
        self.rounds: asyncio.Queue[RendezvousResult] = asyncio.Queue()
        self.decision = RunningDecision(Change.KEEP)
        self.listener: Callable[[], None] | None = None
        self.joined = 0
        self.finished = self.closed = False
        self.job_closed: tuple[bool, str] | None = None

    async def next_round(self) -> RendezvousResult:
        self.joined += 1
        self.decision = RunningDecision(Change.KEEP)
        if self.autoform:
            return result(self.joined - 1, self.shared.restarts)
        return await self.rounds.get()

    def listen(self, callback: Callable[[], None]) -> None:
        self.listener = callback
        self.shared.listeners.append(callback)

    def change(self, change: Change, reason: str) -> None:
        """The store changed so that the running round must ``change``."""
        self.decision = RunningDecision(change, reason)
        assert self.listener is not None
        self.listener()

    failure: BaseException | None = None

    def stack_board(self) -> None:
        return None

    def running_decision(self) -> RunningDecision:
        if self.shared.closed is not None and self.decision.change is Change.KEEP:
            return RunningDecision(Change.CLOSED, self.shared.closed)
        return self.decision

    async def spend_restart(self) -> int:
        self.shared.restarts += 1
        return self.shared.restarts

    async def close_job(self, succeeded: bool, message: str) -> None:
        self.job_closed = (succeeded, message)
        self.shared.close(message)

    async def finish(self) -> None:
        self.finished = True

    async def close(self) -> None:
        self.closed = True


def result(round_number: int, restarts: int = 0, nproc: int = 2) -> RendezvousResult:
    """This node alone in round ``round_number``."""
    return RendezvousResult(round_number, 0, 1, 0, nproc, 0, nproc, "127.0.0.1", 29500, restarts)


# --- workers --------------------------------------------------------------------------------


@dataclass
class _Popen:
    pid: int


_pids = itertools.count(40_000)


def fake_worker(local_rank: int) -> WorkerProcess:
    """A WorkerProcess with no process behind it."""
    request = SpawnRequest(local_rank, ["train.py"], {})
    return WorkerProcess(request, cast("object", _Popen(next(_pids))))  # type: ignore[arg-type]


@dataclass
class FakeAttempt:
    """One attempt's fake workers; the test ends them with :meth:`exit`."""

    number: int
    restart_count: int
    post: Callable[[AgentEvent], None]
    clock: FakeClock
    workers: list[WorkerProcess]
    stubborn: set[int] = field(default_factory=set)  # local ranks that ignore the stop signal
    stops: list[tuple[int, float]] = field(default_factory=list)  # (signal, grace) per stop
    notices: list[int] = field(default_factory=list)  # signals passed on as notices

    def exit(self, local_rank: int, code: int) -> None:
        """Worker ``local_rank`` ends with ``code`` (negative: killed by that signal)."""
        worker = self.workers[local_rank]
        worker.status = ExitStatus.from_returncode(code)
        self.post(WorkerExited(self.number, worker, self.clock.monotonic(), self.clock.wall()))

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running]

    def notify(self, signum: int) -> int:
        self.notices.append(signum)
        return len(self.alive())

    async def stop(self, signum: int, grace: float, cut_short: asyncio.Event) -> None:
        self.stops.append((signum, grace))
        for worker in self.alive():
            if worker.request.local_rank not in self.stubborn:
                self.exit(worker.request.local_rank, -signum)
        if self.alive():
            deadline = self.clock.monotonic() + grace
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_until(cut_short.wait(), deadline)
        for worker in self.alive():
            self.exit(worker.request.local_rank, -signal.SIGKILL)

    def failure(self, worker: WorkerProcess, wall: float, mono: float) -> WorkerFailure:
        assert worker.status is not None
        place = (worker.request.local_rank, worker.request.local_rank, worker.pid)
        return WorkerFailure.build(place, worker.status, (wall, mono), "", None, "boom")

    def return_values(self) -> dict[int, object]:
        return {w.request.local_rank: None for w in self.workers}

    elsewhere = ""

    def rank_status(self, stacks: bool) -> list[dict[str, object]]:
        return [{"local_rank": w.request.local_rank, "state": "running"} for w in self.workers]


class FakeAttempts:
    """Starts :class:`FakeAttempt`s and keeps them for the test to drive."""

    def __init__(self, clock: FakeClock, nproc: int = 2, prestarted: bool = False) -> None:
        self.clock, self.nproc, self.prestarted = clock, nproc, prestarted
        self.started: list[FakeAttempt] = []
        self.post: Callable[[AgentEvent], None] = lambda _event: None
        self.on_start: Callable[[FakeAttempt], None] = lambda _attempt: None

    def bind(self, post: Callable[[AgentEvent], None]) -> FakeAttempts:
        """The supervisor hands over its queue's ``put``."""
        self.post = post
        return self

    async def __call__(self, rdzv: RendezvousResult | None, number: int) -> FakeAttempt:
        restarts = rdzv.restarts if rdzv is not None else 0
        workers = [fake_worker(r) for r in range(self.nproc)]
        attempt = FakeAttempt(number, restarts, self.post, self.clock, workers)
        self.started.append(attempt)
        self.on_start(attempt)
        return attempt


def send_signal(signum: int) -> None:
    """Deliver ``signum`` to this process (the supervisor's loop handler queues it)."""
    os.kill(os.getpid(), signum)
