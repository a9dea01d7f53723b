"""Stopping a group: grace, SIGKILL, and a process that will not die is given up on."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from rallypoint.workers.group import KILL_WAIT, WorkerGroup
from rallypoint.workers.process import SpawnRequest, WorkerProcess
from tests.fakes import FakeClock


class FakeGuardian:
    def __init__(self) -> None:
        self.released: list[int] = []

    def release(self, pgid: int) -> None:
        self.released.append(pgid)

    async def stop_escapees(self, signum: int, grace: float, kill_wait: float) -> None:
        pass


class StuckWorker(WorkerProcess):
    """A worker whose process never ends, whatever it is sent (as in the D state)."""

    def __init__(self, pid: int) -> None:
        self.request = SpawnRequest(0, ["stuck"], {})
        self.status = None
        self.signals: list[int] = []
        self._pid = pid

    @property
    def pid(self) -> int:
        return self._pid

    def signal_group(self, signum: int) -> None:
        self.signals.append(signum)

    def watch_exit(
        self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[WorkerProcess], None]
    ) -> None:
        pass


def test_a_process_that_outlives_sigkill_is_given_up_on() -> None:
    guardian = FakeGuardian()
    worker = StuckWorker(4242)

    async def scenario() -> list[WorkerProcess]:
        group = WorkerGroup(guardian, lambda w: None, kill_wait=0.05)  # type: ignore[arg-type]
        group.adopt([worker])
        return await asyncio.wait_for(group.stop(signal.SIGTERM, 0.05), 5)

    stubborn = asyncio.run(scenario())
    assert stubborn == [worker]
    assert worker.signals == [signal.SIGTERM, signal.SIGKILL]
    assert guardian.released == []  # the guardian keeps watching it


def test_the_grace_and_the_kill_wait_pass_on_the_injected_clock() -> None:
    """Thirty seconds of grace and ten of waiting after SIGKILL, in no real time."""
    guardian, worker, clock = FakeGuardian(), StuckWorker(4243), FakeClock()

    async def scenario() -> list[WorkerProcess]:
        group = WorkerGroup(guardian, lambda w: None, clock=clock)  # type: ignore[arg-type]
        group.adopt([worker])
        async with clock.autojump():
            return await asyncio.wait_for(group.stop(signal.SIGTERM, 30.0), 5)

    start = clock.monotonic()
    assert asyncio.run(scenario()) == [worker]
    assert clock.monotonic() - start == 30.0 + KILL_WAIT
