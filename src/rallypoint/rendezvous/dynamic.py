"""Runs the rendezvous machine over the store (c10d-style and static, multi-node).

Design note: the driver owns the I/O the pure machine never does: a store
connection, this node's lease (kept alive by a task; if a keep-alive fails the
node is cut off and says so), the mirror of the store, timers for the last
call and the join deadline, and the compare-and-set that completes a round.
It learns of every change through the mirror's watch; the only waits are for
a change or for a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rallypoint.clock import Clock
from rallypoint.errors import (
    RendezvousClosedError,
    RendezvousError,
    RendezvousLostError,
    RendezvousTimeoutError,
)
from rallypoint.rendezvous.machine import (
    Change,
    JoinDecision,
    RunningDecision,
    Settings,
    Step,
    decide_join,
    decide_running,
    next_target,
    place_in,
)
from rallypoint.rendezvous.mirror import StoreMirror
from rallypoint.rendezvous.ports import PortReservation
from rallypoint.rendezvous.records import (
    CLOSED_KEY,
    DONE_PREFIX,
    JOIN_PREFIX,
    NODE_PREFIX,
    RESTARTS_KEY,
    ROUND_KEY,
    ClosedRecord,
    NodeRecord,
    RoundRecord,
    encode_closed,
    encode_join,
    encode_node,
    encode_round,
)
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.store import StoreClient, StoreError, StoreServer

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0  # seconds between "waiting for nodes" lines


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Rendezvous timing, from ``--rdzv-conf`` (seconds)."""

    join: float = 600.0
    last_call: float = 30.0
    lease_ttl: float = 3.0
    exit_barrier: float = 300.0
    close: float = 10.0


class StoreRendezvous:
    """This node's part of a multi-node rendezvous over the store."""

    def __init__(
        self,
        client: StoreClient,
        server: StoreServer | None,
        me: NodeRecord,
        settings: Settings,
        timeouts: Timeouts,
        clock: Clock,
        reservation: PortReservation | None = None,
    ) -> None:
        self._client, self._server, self.me = client, server, me
        self._reservation = reservation
        self._settings, self._timeouts, self._clock = settings, timeouts, clock
        self._mirror = StoreMirror(client)
        self._lease = 0
        self._keeper: asyncio.Task[None] | None = None
        self._current: RoundRecord | None = None
        self.static_master_addr: str | None = None

    async def start(self) -> None:
        """Take a lease, publish this node, and start following the store."""
        try:
            self._lease = await self._client.lease_grant(self._timeouts.lease_ttl)
            await self._client.put(
                NODE_PREFIX + self.me.node_id, encode_node(self.me), lease=self._lease
            )
            await self._mirror.start()
        except StoreError as exc:
            raise RendezvousLostError(f"rendezvous store: {exc}") from exc
        self._keeper = asyncio.create_task(self._keep_alive(), name="rendezvous-lease")

    async def _keep_alive(self) -> None:
        interval = self._timeouts.lease_ttl / 3
        try:
            while True:
                await asyncio.sleep(interval)
                await asyncio.wait_for(self._client.lease_keepalive(self._lease), interval * 2)
        except (StoreError, TimeoutError) as exc:
            self._mirror.lost = StoreError(f"this node's lease could not be renewed ({exc!r})")
            self._mirror.changed.set()
            if self._mirror.listener is not None:
                self._mirror.listener()

    def _check_lost(self) -> None:
        if self._mirror.lost is not None:
            raise RendezvousLostError(f"lost the rendezvous store: {self._mirror.lost}")

    async def next_round(self) -> RendezvousResult:
        """Join the next round and wait until it completes with this node in it."""
        deadline = self._clock.monotonic() + self._timeouts.join
        target = next_target(self._mirror.view())
        await self._join(target)
        min_reached_at: float | None = None
        last_progress = self._clock.monotonic()
        while True:
            self._check_lost()
            now = self._clock.monotonic()
            view = self._mirror.view()
            if len(view.joined(target)) >= self._settings.min_nodes and min_reached_at is None:
                min_reached_at = now
            decision = decide_join(
                view, self.me.node_id, target, self._settings, min_reached_at, now
            )
            if decision.step is Step.JOINED and decision.record is not None:
                return self._joined(decision.record)
            if decision.step is Step.CLOSED:
                raise RendezvousClosedError(_closed_text(view.closed))
            if decision.step is Step.RETARGET:
                target, min_reached_at = decision.target, None
                await self._join(target)
                continue
            if decision.step is Step.COMPLETE and decision.record is not None:
                await self._complete(decision.record)
                continue
            if now >= deadline:
                raise RendezvousTimeoutError(self._waiting_text(target, self._timeouts.join))
            if now - last_progress >= PROGRESS_EVERY:
                logger.warning("%s", self._waiting_text(target, None))
                last_progress = now
            await self._mirror.wait_change(self._wait_for(decision, deadline, now))

    def _wait_for(self, decision: JoinDecision, deadline: float, now: float) -> float:
        until = min(deadline, decision.deadline or deadline, now + PROGRESS_EVERY)
        return max(0.0, until - now)

    def _joined(self, record: RoundRecord) -> RendezvousResult:
        self._current = record
        logger.info(
            "round %d complete: %d nodes, this node is group rank %s",
            record.round,
            len(record.members),
            record.rank_of(self.me.node_id),
        )
        return place_in(record, self.me.node_id, self.static_master_addr)

    async def _join(self, target: int) -> None:
        try:
            await self._client.put(
                JOIN_PREFIX + self.me.node_id, encode_join(target), lease=self._lease
            )
        except StoreError as exc:
            raise RendezvousLostError(f"lost the rendezvous store: {exc}") from exc

    async def _complete(self, record: RoundRecord) -> None:
        expected = self._mirror.revisions.get(ROUND_KEY, 0)
        try:
            result = await self._client.put(
                ROUND_KEY, encode_round(record), expected_revision=expected
            )
        except StoreError as exc:
            raise RendezvousLostError(f"lost the rendezvous store: {exc}") from exc
        if result.ok:
            logger.info("completed round %d with %d nodes", record.round, len(record.members))
        # won or lost the race, the watch brings the round record
        while self._mirror.revisions.get(ROUND_KEY, 0) < result.revision:
            self._check_lost()
            await self._mirror.wait_change(1.0)

    def _waiting_text(self, target: int, timeout: float | None) -> str:
        view = self._mirror.view()
        joined = sorted(n.node_id for n in view.joined(target))
        want = f"{self._settings.min_nodes}:{self._settings.max_nodes}"
        names = ", ".join(joined)
        text = f"waiting for round {target}: {len(joined)} of {want} nodes joined ({names})"
        if self._settings.static:
            present = {n.node_rank for n in view.joined(target)}
            missing = [str(r) for r in range(self._settings.max_nodes) if r not in present]
            text += f"; missing node ranks {', '.join(missing)}"
        return f"{text}; gave up after {timeout:.0f} s" if timeout is not None else text

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every change of the store."""
        self._mirror.listener = callback

    def running_decision(self) -> RunningDecision:
        """Whether the current round still holds."""
        if self._mirror.lost is not None:
            return RunningDecision(Change.CLOSED, f"lost the rendezvous store: {self._mirror.lost}")
        if self._current is None:
            return RunningDecision(Change.KEEP)
        return decide_running(self._mirror.view(), self._current, self._settings)

    async def spend_restart(self) -> int:
        """Count one failure restart for the whole job."""
        try:
            return await self._client.add(RESTARTS_KEY, 1)
        except StoreError as exc:
            raise RendezvousLostError(f"lost the rendezvous store: {exc}") from exc

    async def close_job(self, succeeded: bool, message: str) -> None:
        """Tell every node the job is over."""
        record = ClosedRecord("succeeded" if succeeded else "failed", self.me.node_id, message)
        with contextlib.suppress(StoreError):
            await self._client.put(CLOSED_KEY, encode_closed(record), expected_revision=0)

    async def finish(self) -> None:
        """Report success and wait (bounded) until every member of the round has too."""
        current = self._current
        if current is None:
            return
        key = f"{DONE_PREFIX}{current.round}/{self.me.node_id}"
        deadline = self._clock.monotonic() + self._timeouts.exit_barrier
        with contextlib.suppress(StoreError):
            await self._client.put(key, "1", lease=self._lease)
        while self._clock.monotonic() < deadline and self._mirror.lost is None:
            members = {m.node_id for m in current.members}
            if members <= self._mirror.done(current.round):
                await self.close_job(True, "")
                return
            if self.running_decision().change is not Change.KEEP:
                return
            await self._mirror.wait_change(deadline - self._clock.monotonic())

    async def close(self) -> None:
        """Leave: stop the lease, the mirror and the connection; a host waits for the others."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._server is not None:
            await self._wait_others_gone()
        await self._mirror.close()
        with contextlib.suppress(StoreError):
            await self._client.lease_revoke(self._lease)
        await self._client.close()
        if self._server is not None:
            await self._server.close()
        if self._reservation is not None:
            self._reservation.release()

    async def _wait_others_gone(self) -> None:
        deadline = self._clock.monotonic() + self._timeouts.close
        while self._clock.monotonic() < deadline and self._mirror.lost is None:
            others = [n for n in self._mirror.view().nodes if n != self.me.node_id]
            if not others:
                return
            await self._mirror.wait_change(deadline - self._clock.monotonic())


def _closed_text(closed: ClosedRecord | None) -> str:
    if closed is None:
        return "the job is closed"
    if closed.reason == "succeeded":
        return "the job already finished; this node came too late"
    return f"the job failed on node {closed.by}: {closed.message}"


__all__ = ["RendezvousError", "StoreRendezvous", "Timeouts"]
