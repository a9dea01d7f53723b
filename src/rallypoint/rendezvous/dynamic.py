"""One node's part of a multi-node rendezvous over the store (c10d-style and static).

Design note: the driver owns the I/O the pure machine never does: a store
connection, this node's lease (kept alive by a task; when a keep-alive fails
the node is cut off and says so), a mirror of the few small keys every node
watches, and the timers of the join deadline. Every task it starts (the lease
keep-alive, the stand-by, the mirror's watches, the coordinator's) runs under
one :class:`~rallypoint.tasks.TaskOwner`: a task that fails breaks the
rendezvous at once, and whoever waits on it or asks about the round gets that
error, named; :meth:`StoreRendezvous.close` still revokes the lease and closes
the connection. Waits go through the injected clock. A node joins by writing its
``join`` record and waits for the ``round`` header; it then reads its own
assignment once. Completing rounds is the coordinator's job
(:mod:`rallypoint.rendezvous.coordinator`); every node stands ready to take
it over, by compare-and-set of the leased ``coordinator`` key, when it is free.
The only waits are for a change pushed by the store or for a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from rallypoint.clock import Clock
from rallypoint.errors import (
    RendezvousClosedError,
    RendezvousLostError,
    RendezvousTimeoutError,
)
from rallypoint.rendezvous.coordinator import Coordinator
from rallypoint.rendezvous.machine import Change, RunningDecision, Settings, result_from
from rallypoint.rendezvous.mirror import StoreMirror
from rallypoint.rendezvous.ports import MasterPort
from rallypoint.rendezvous.records import (
    ASSIGN_PREFIX,
    CLOSED_KEY,
    COORDINATOR_KEY,
    DONE_PREFIX,
    JOIN_PREFIX,
    RERUN_KEY,
    RESTARTS_KEY,
    ROUND_KEY,
    WAITING_KEY,
    ClosedRecord,
    NodeRecord,
    RendezvousStateError,
    RoundHeader,
    decode_assignment,
    decode_closed,
    decode_header,
    decode_notice,
    encode_closed,
    encode_join,
)
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.rendezvous.stacks import StoreStackBoard
from rallypoint.store import KeyValueStore, StoreError, StoreServer
from rallypoint.tasks import TaskOwner

logger = logging.getLogger(__name__)

T = TypeVar("T")
PROGRESS_EVERY = 5.0  # seconds between "waiting for round N to form" lines
STAND_BY_JITTER = 0.2  # seconds; see _stand_by
CoordinatorFactory = Callable[
    [KeyValueStore, Settings, Clock, "str | None", TaskOwner], Coordinator
]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Rendezvous timing, from ``--rdzv-conf`` (seconds)."""

    join: float = 600.0
    last_call: float = 30.0
    lease_ttl: float = 5.0
    exit_barrier: float = 300.0
    close: float = 10.0


class StoreRendezvous:
    """This node's part of a multi-node rendezvous over the store."""

    def __init__(
        self,
        client: KeyValueStore,
        server: StoreServer | None,
        me: NodeRecord,
        settings: Settings,
        timeouts: Timeouts,
        clock: Clock,
        reservation: MasterPort | None = None,
        coordinator: CoordinatorFactory = Coordinator,
    ) -> None:
        self._client, self._server, self.me = client, server, me
        self._settings, self._timeouts, self._clock = settings, timeouts, clock
        self._reservation = reservation
        self._owner = TaskOwner("rendezvous", self._task_failed)
        self._mirror = StoreMirror(client, clock, self._owner)
        self._lease = 0
        self._broken: str | None = None  # why a task of ours failed
        self._make_coordinator = coordinator
        self._coordinator: Coordinator | None = None
        self._current: RoundHeader | None = None
        self.static_master_addr: str | None = None
        self._board: StoreStackBoard | None = None

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take a lease and follow the store (both at once), stand ready to coordinate."""
        try:
            self._lease, _ = await asyncio.gather(
                self._client.lease_grant(self._timeouts.lease_ttl), self._mirror.start()
            )
        except StoreError as exc:
            raise RendezvousLostError(f"rendezvous store: {exc}") from exc
        self._owner.spawn(self._keep_alive(), "rendezvous-lease")
        self._owner.spawn(self._stand_by(), "rendezvous-stand-by")

    def _task_failed(self, error: BaseException, task: str) -> None:
        self._broken = f"this node's rendezvous task {task} failed: {type(error).__name__}: {error}"
        self._mirror.wake()

    async def _keep_alive(self) -> None:
        interval, ttl = self._timeouts.lease_ttl / 3, self._timeouts.lease_ttl
        try:
            while True:
                await self._clock.sleep(interval)
                # a reply later than the TTL would find the lease gone anyway
                keepalive = self._client.lease_keepalive(self._lease)
                await self._clock.wait_until(keepalive, self._clock.monotonic() + ttl)
        except (StoreError, TimeoutError) as exc:
            self._mirror.mark_lost(StoreError(f"this node's lease could not be renewed ({exc!r})"))

    async def _stand_by(self) -> None:
        """Take the coordinator key whenever it is free (at start, or when its holder died).

        The store's host tries at once. Other nodes first wait a random moment of up
        to STAND_BY_JITTER and look again, so thousands of nodes that start together
        do not all race for the key: the first one's win reaches the rest first.
        """
        try:
            while self._coordinator is None and self._mirror.lost is None:
                seen = self._mirror.version
                if COORDINATOR_KEY not in self._mirror.keys:
                    if self._server is None:
                        await self._clock.sleep(random.uniform(0, STAND_BY_JITTER))
                    if COORDINATOR_KEY not in self._mirror.keys:
                        await self._try_coordinate()
                await self._mirror.wait_change(None, since=seen)
        except StoreError as exc:
            self._mirror.mark_lost(exc)

    async def _try_coordinate(self) -> None:
        taken = await self._client.put(
            COORDINATOR_KEY, self.me.node_id, expected_revision=0, lease=self._lease
        )
        if taken.ok:
            master = self.static_master_addr
            self._coordinator = self._make_coordinator(
                self._client, self._settings, self._clock, master, self._owner
            )
            await self._coordinator.start()
            logger.info("this node coordinates the rendezvous")

    @property
    def failure(self) -> BaseException | None:
        """The error of the first task of this rendezvous that failed, if one did."""
        return self._owner.failure

    async def close(self) -> None:
        """Leave: stop every task, release the lease, close the connection (all, always).

        The store's host first waits (bounded) for the other nodes to leave.
        """
        await self._owner.close()
        try:
            if self._server is not None:
                await self._wait_others_gone()
            if self._coordinator is not None:
                await self._coordinator.close()
            await self._mirror.close()
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._lease:
            with contextlib.suppress(StoreError):
                await self._client.lease_revoke(self._lease)
        await self._client.close()
        if self._server is not None:
            await self._server.close()
        if self._reservation is not None:
            self._reservation.release()

    async def _wait_others_gone(self) -> None:
        quiet = TaskOwner("rendezvous-closing", lambda _error, _task: None)
        nodes = StoreMirror(self._client, self._clock, quiet, (JOIN_PREFIX,))
        with contextlib.suppress(StoreError):
            await nodes.start()
            deadline = self._clock.monotonic() + self._timeouts.close
            while self._clock.monotonic() < deadline and nodes.lost is None:
                if not set(nodes.keys) - {JOIN_PREFIX + self.me.node_id}:
                    break
                await nodes.wait_change(deadline - self._clock.monotonic())
        await nodes.close()

    # --- joining ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self._broken is not None:
            raise RendezvousLostError(self._broken) from self._owner.failure
        if self._mirror.lost is not None:
            raise RendezvousLostError(f"lost the rendezvous store: {self._mirror.lost}")
        closed = self._mirror.one(CLOSED_KEY, decode_closed)
        if closed is not None:
            raise RendezvousClosedError(closed_text(closed))

    def _header(self) -> RoundHeader | None:
        return self._mirror.one(ROUND_KEY, decode_header)

    async def next_round(self) -> RendezvousResult:
        """Join the next round and wait until it completes with this node in it.

        The torch store this node serves starts afresh first, before any worker of the
        round can exist, wherever group rank 0 of the round turns out to be.
        """
        if self._reservation is not None:
            self._reservation.fresh_store()
        deadline = self._clock.monotonic() + self._timeouts.join
        header = self._header()
        target = 0 if header is None else header.round + 1
        await self._store(
            self._client.put(
                JOIN_PREFIX + self.me.node_id, encode_join(self.me, target), lease=self._lease
            )
        )
        last_progress = self._clock.monotonic()
        while True:
            seen = self._mirror.version
            self._check()
            header = self._header()
            if header is not None and header.round >= target:
                joined = await self._assignment(header)
                if joined is not None:
                    return joined
                target = header.round + 1  # the round filled without us: wait for the next
                await self._store(
                    self._client.put(
                        JOIN_PREFIX + self.me.node_id,
                        encode_join(self.me, target),
                        lease=self._lease,
                    )
                )
                continue
            now = self._clock.monotonic()
            if now >= deadline:
                raise RendezvousTimeoutError(await self._waiting_text(target, self._timeouts.join))
            if now - last_progress >= PROGRESS_EVERY:
                logger.warning("%s", await self._waiting_text(target, None))
                last_progress = now
            wait = min(deadline, last_progress + PROGRESS_EVERY) - now
            await self._mirror.wait_change(wait, since=seen)

    async def _assignment(self, header: RoundHeader) -> RendezvousResult | None:
        key = f"{ASSIGN_PREFIX}{header.round}/{self.me.node_id}"
        found = await self._store(self._client.get(key))
        if found is None:
            return None
        try:
            assignment = decode_assignment(found.value)
        except RendezvousStateError as exc:
            raise RendezvousLostError(f"unreadable assignment for round {header.round}") from exc
        self._current = header
        logger.info(
            "round %d complete: %d nodes, this node is group rank %d",
            header.round,
            header.size,
            assignment.group_rank,
        )
        return result_from(header, assignment)

    async def _store(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except StoreError as exc:
            raise RendezvousLostError(f"lost the rendezvous store: {exc}") from exc

    async def _waiting_text(self, target: int, timeout: float | None) -> str:
        found = await self._store(self._client.get(WAITING_KEY))
        try:
            note = None if found is None else decode_notice(found.value)
        except RendezvousStateError:
            note = None
        text = note.text if note is not None and note.round == target else "no node joined yet"
        text = f"waiting for round {target} to form: {text}"
        return f"{text}; gave up after {timeout:.0f} s" if timeout is not None else text

    # --- while the workers run -------------------------------------------------------------

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every change this node follows."""
        self._mirror.listener = callback

    def stack_board(self) -> StoreStackBoard | None:
        """This node's stack record under its lease, and the other nodes' (once started)."""
        if self._board is None and self._lease:
            node = self.me.node_id
            self._board = StoreStackBoard(
                self._client, node, self._lease, self._clock, self._owner, self._mirror
            )
        return self._board

    def running_decision(self) -> RunningDecision:
        """Whether the current round still holds."""
        if self._broken is not None:
            return RunningDecision(Change.LOST, self._broken)
        if self._mirror.lost is not None:
            return RunningDecision(Change.LOST, f"lost the rendezvous store: {self._mirror.lost}")
        closed = self._mirror.one(CLOSED_KEY, decode_closed)
        if closed is not None and closed.reason != "succeeded":
            return RunningDecision(Change.CLOSED, closed_text(closed))
        current, header = self._current, self._header()
        if current is None:
            return RunningDecision(Change.KEEP)
        rerun = self._mirror.one(RERUN_KEY, decode_notice)
        if rerun is not None and rerun.round == current.round:
            return RunningDecision(Change.RESTART, rerun.text)
        if header is not None and header.round > current.round:
            return RunningDecision(Change.RESTART, f"round {header.round} formed without us")
        return RunningDecision(Change.KEEP)

    async def spend_restart(self) -> int:
        """Count one failure restart for the whole job."""
        return await self._store(self._client.add(RESTARTS_KEY, 1))

    async def close_job(self, succeeded: bool, message: str) -> None:
        """Tell every node the job is over."""
        record = ClosedRecord("succeeded" if succeeded else "failed", self.me.node_id, message)
        with contextlib.suppress(StoreError):
            await self._client.put(CLOSED_KEY, encode_closed(record), expected_revision=0)

    async def finish(self) -> None:
        """Report success; wait (bounded) until every member has, or the round is over."""
        current = self._current
        if current is None:
            return
        key = f"{DONE_PREFIX}{current.round}/{self.me.node_id}"
        with contextlib.suppress(StoreError):
            await self._client.put(key, "1", lease=self._lease)
        deadline = self._clock.monotonic() + self._timeouts.exit_barrier
        while self._clock.monotonic() < deadline and self._mirror.lost is None:
            seen = self._mirror.version
            if CLOSED_KEY in self._mirror.keys or self._broken is not None:
                return
            if self.running_decision().change is not Change.KEEP:
                return
            await self._mirror.wait_change(deadline - self._clock.monotonic(), since=seen)


def closed_text(closed: ClosedRecord) -> str:
    """Why a closed job refuses this node."""
    if closed.reason == "succeeded":
        return "the job already finished; this node came too late"
    return f"the job failed on node {closed.by}: {closed.message}"
