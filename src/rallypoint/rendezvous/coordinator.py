"""The coordinator: the one node that completes rounds and speaks for the job.

Design note: if every node watched every other node's records, a round of N
nodes would push N^2 events (10,000 nodes: 10^8). Instead one node, elected
through a leased ``coordinator`` key (taken over by compare-and-set when its
holder dies), mirrors every node's records and runs the pure machine; every
other node watches only a handful of small keys. The coordinator completes a
round by writing each member's assignment, the member list, and last the small
``round`` header with compare-and-set; it asks a round's members to restart
through ``rerun`` when a member leaves, a member restarts or a node waits to
join; it publishes who has joined (``waiting``); and it closes the job once
every member reported success. Everything it decides comes from
:mod:`rallypoint.rendezvous.machine`.
"""

from __future__ import annotations

import asyncio
import logging

from rallypoint.clock import Clock
from rallypoint.rendezvous.machine import (
    Change,
    Settings,
    Step,
    assignments,
    decide_round,
    decide_running,
    header_of,
)
from rallypoint.rendezvous.mirror import FULL_PREFIXES, StoreMirror
from rallypoint.rendezvous.records import (
    ASSIGN_PREFIX,
    CLOSED_KEY,
    MEMBERS_KEY,
    RERUN_KEY,
    ROUND_KEY,
    WAITING_KEY,
    ClosedRecord,
    Notice,
    RoundRecord,
    decode_closed,
    decode_round,
    encode_assignment,
    encode_closed,
    encode_header,
    encode_notice,
    encode_round,
)
from rallypoint.store import KeyValueStore, StoreError
from rallypoint.tasks import TaskOwner

logger = logging.getLogger(__name__)

NOTE_EVERY = 1.0  # seconds between updates of the "waiting" note


class Coordinator:
    """Runs while this node holds the coordinator key."""

    def __init__(
        self,
        client: KeyValueStore,
        settings: Settings,
        clock: Clock,
        master_addr: str | None,
        owner: TaskOwner,
    ) -> None:
        self._client, self._settings, self._clock = client, settings, clock
        self._master_addr, self._owner = master_addr, owner
        self._mirror = StoreMirror(client, clock, owner, FULL_PREFIXES)
        self._last: RoundRecord | None = None
        self._rerun_sent: int | None = None
        self._min_reached: tuple[int, float] | None = None
        self._note: tuple[int, float] = (-1, 0.0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the job's state and start coordinating from a task of the owner given.

        Raises:
            StoreError: the store failed.
            RendezvousStateError: the job's member list is unreadable.
        """
        await self._mirror.start()
        members = await self._client.get(MEMBERS_KEY)  # read once: nobody watches this one
        self._last = None if members is None else decode_round(members.value)
        self._task = self._owner.spawn(self._run(), "rendezvous-coordinator")

    async def close(self) -> None:
        """Stop coordinating."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._mirror.close()

    async def _run(self) -> None:
        try:
            while self._mirror.lost is None:
                seen = self._mirror.version
                timeout = await self._step()
                await self._mirror.wait_change(timeout, since=seen)
        except StoreError as exc:
            logger.warning("the rendezvous coordinator lost the store: %s", exc)

    async def _step(self) -> float | None:
        closed = self._mirror.one(CLOSED_KEY, decode_closed)
        if closed is not None:
            return None
        await self._watch_current()
        return await self._form_next()

    async def _watch_current(self) -> None:
        last = self._last
        if last is None or self._rerun_sent == last.round:
            return
        view = self._mirror.view(last)
        decision = decide_running(view, last, self._settings)
        if decision.change is Change.RESTART:
            self._rerun_sent = last.round
            await self._client.put(RERUN_KEY, encode_notice(Notice(last.round, decision.reason)))
            logger.info("round %d must restart: %s", last.round, decision.reason)
        elif self._mirror.done_count(last.round) >= len(last.members):
            await self._client.put(
                CLOSED_KEY, encode_closed(ClosedRecord("succeeded", "", "")), expected_revision=0
            )

    async def _form_next(self) -> float | None:
        target = 0 if self._last is None else self._last.round + 1
        now = self._clock.monotonic()
        view = self._mirror.view(self._last)
        count = view.count_joined(target)
        if count < self._settings.min_nodes:
            self._min_reached = None
        elif self._min_reached is None or self._min_reached[0] != target:
            self._min_reached = (target, now)
        started = self._min_reached[1] if self._min_reached else None
        decision = decide_round(view, target, self._settings, started, now)
        if decision.step is Step.COMPLETE and decision.record is not None:
            await self._complete(decision.record)
            return None
        waits = [await self._publish_waiting(target, count, now)]
        if decision.deadline is not None:
            waits.append(max(0.0, decision.deadline - now))
        return min((w for w in waits if w is not None), default=None)

    async def _complete(self, record: RoundRecord) -> None:
        puts = [
            self._client.put(f"{ASSIGN_PREFIX}{record.round}/{node_id}", encode_assignment(place))
            for node_id, place in assignments(record).items()
        ]
        await asyncio.gather(*puts)  # pipelined on one connection, not one round trip each
        await self._client.put(MEMBERS_KEY, encode_round(record))
        await self._client.put(ROUND_KEY, encode_header(header_of(record, self._master_addr)))
        self._last = record
        logger.info("completed round %d with %d nodes", record.round, len(record.members))

    async def _publish_waiting(self, target: int, count: int, now: float) -> float | None:
        """Publish who has joined, at most every NOTE_EVERY s; say when to try again."""
        if self._note[0] == count:
            return None
        if now - self._note[1] < NOTE_EVERY:
            return NOTE_EVERY - (now - self._note[1])
        self._note = (count, now)
        settings = self._settings
        text = f"{count} of {settings.min_nodes}:{settings.max_nodes} nodes joined"
        if settings.static:
            present = {n.node_rank for n in self._mirror.view(self._last).joined(target)}
            missing = [str(r) for r in range(settings.max_nodes) if r not in present]
            text += f"; missing node ranks {', '.join(missing[:16])}"
        await self._client.put(WAITING_KEY, encode_notice(Notice(target, text)))
        return None
