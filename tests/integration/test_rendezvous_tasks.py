"""A failing background task of the rendezvous ends the node at once, named; the lease goes.

The failure is injected through the rendezvous's ``coordinator`` constructor
seam; the store is a real server on 127.0.0.1, the node a real supervisor
(with fake workers: the subject here is the rendezvous's tasks).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable

import pytest

from rallypoint.agent.job import Job
from rallypoint.agent.supervisor import Supervisor
from rallypoint.clock import Clock, SystemClock
from rallypoint.config import Entrypoint, EntrypointKind, LaunchConfig
from rallypoint.errors import RendezvousLostError, RendezvousTimeoutError
from rallypoint.rendezvous.coordinator import Coordinator
from rallypoint.rendezvous.dynamic import CoordinatorFactory, StoreRendezvous, Timeouts
from rallypoint.rendezvous.machine import Settings
from rallypoint.rendezvous.records import NodeRecord, RendezvousStateError
from rallypoint.store import KeyValueStore, StoreClient, StoreServer
from rallypoint.tasks import TaskOwner
from tests.fakes import FakeAttempt, FakeAttempts, FakeClock

pytestmark = pytest.mark.integration
RUN = "tasks-test"


class UnreadableMembers(Coordinator):
    """A coordinator whose start finds the job's member list unreadable."""

    async def start(self) -> None:
        raise RendezvousStateError("the member list is not what this version writes")


class FailsWhileRunning(Coordinator):
    """A coordinator with one more task, which fails once ``go`` is set (the workers run)."""

    def __init__(
        self,
        client: KeyValueStore,
        settings: Settings,
        clock: Clock,
        master_addr: str | None,
        owner: TaskOwner,
        go: asyncio.Event,
    ) -> None:
        super().__init__(client, settings, clock, master_addr, owner)
        self._extra_owner, self._go = owner, go

    async def start(self) -> None:
        await super().start()
        self._extra_owner.spawn(self._fail_later(), "rendezvous-coordinator-check")

    async def _fail_later(self) -> None:
        await self._go.wait()
        raise RendezvousStateError("round 0's header changed under the coordinator")


def job() -> Job:
    config = LaunchConfig(1, 1, 2, run_id=RUN, shutdown_timeout=5, log_dir=os.devnull)
    return Job(config, Entrypoint(EntrypointKind.BINARY, "train.py"), {}, host="node-a")


async def with_store(scenario: Callable[[int], Awaitable[None]]) -> None:
    server = StoreServer("127.0.0.1", 0, RUN, None)
    await server.start()
    try:
        await scenario(server.port)
    finally:
        await server.close()


async def rendezvous(port: int, coordinator: CoordinatorFactory) -> StoreRendezvous:
    client = await StoreClient.connect("127.0.0.1", port, RUN, None, timeout=5.0)
    me = NodeRecord("node-a", "127.0.0.1", os.getpid(), 2, "default_role", 29500)
    timeouts = Timeouts(join=60.0, lease_ttl=30.0, close=1.0)
    settings = Settings(1, 1, 30.0)
    node = StoreRendezvous(
        client, None, me, settings, timeouts, SystemClock(), coordinator=coordinator
    )
    await node.start()
    return node


async def leased_keys(port: int) -> list[str]:
    """The keys bound to a lease that a node of this job still holds."""
    checker = await StoreClient.connect("127.0.0.1", port, RUN, None, timeout=5.0)
    try:
        found = [*(await checker.range("join/")).entries, *(await checker.range("job/")).entries]
        return [kv.key for kv in found if kv.key in ("job/coordinator",) or "join/" in kv.key]
    finally:
        await checker.close()


def supervisor(node: StoreRendezvous, attempts: FakeAttempts) -> Supervisor:
    return Supervisor(job(), SystemClock(), rendezvous=node, attempts=attempts.bind)


def test_a_task_failing_during_the_join_ends_the_node_named_and_releases_the_lease() -> None:
    async def scenario(port: int) -> None:
        node = await rendezvous(port, UnreadableMembers)
        attempts = FakeAttempts(FakeClock())
        started = time.monotonic()
        with pytest.raises(RendezvousLostError) as raised:
            await asyncio.wait_for(supervisor(node, attempts).run(), 10.0)
        assert time.monotonic() - started < 1.0
        assert "rendezvous-stand-by" in str(raised.value)
        assert "RendezvousStateError: the member list is not what" in str(raised.value)
        assert isinstance(raised.value.__cause__, RendezvousStateError)
        assert attempts.started == []
        assert await leased_keys(port) == []  # revoked: the 30 s TTL cannot have run out

    asyncio.run(with_store(scenario))


def test_a_task_failing_while_the_workers_run_stops_them_and_ends_the_node() -> None:
    async def scenario(port: int) -> None:
        go = asyncio.Event()
        node = await rendezvous(port, functools.partial(FailsWhileRunning, go=go))
        attempts = FakeAttempts(FakeClock())
        failed_at: list[float] = []

        def running(_attempt: FakeAttempt) -> None:
            failed_at.append(time.monotonic())
            go.set()

        attempts.on_start = running
        with pytest.raises(RendezvousLostError, match="rendezvous-coordinator-check") as raised:
            await asyncio.wait_for(supervisor(node, attempts).run(), 10.0)
        assert time.monotonic() - failed_at[0] < 1.0
        assert "header changed under the coordinator" in str(raised.value)
        assert isinstance(raised.value.__cause__, RendezvousStateError)
        [(signum, grace)] = attempts.started[0].stops
        assert (signum, round(grace)) == (signal.SIGTERM, 30)
        assert await leased_keys(port) == []

    asyncio.run(with_store(scenario))


def test_the_join_deadline_and_progress_lines_run_on_the_injected_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten minutes of join timeout pass in fake time: every wait goes through the clock."""
    clock = FakeClock()

    async def scenario(port: int) -> None:
        client = await StoreClient.connect("127.0.0.1", port, RUN, None, timeout=5.0)
        me = NodeRecord("node-a", "127.0.0.1", os.getpid(), 2, "default_role", 29500)
        node = StoreRendezvous(client, None, me, Settings(2, 2, 30.0), Timeouts(join=600.0), clock)
        await node.start()
        try:
            async with clock.autojump():
                with pytest.raises(RendezvousTimeoutError, match="gave up after 600 s"):
                    await asyncio.wait_for(node.next_round(), 20.0)
        finally:
            await node.close()

    started, fake_start = time.monotonic(), clock.monotonic()
    asyncio.run(with_store(scenario))
    assert clock.monotonic() - fake_start >= 600.0
    assert time.monotonic() - started < 15.0
    assert sum("waiting for round 0 to form" in r.message for r in caplog.records) >= 100
