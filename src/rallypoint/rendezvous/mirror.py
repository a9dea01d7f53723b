"""A local copy of some of the store's keys, kept current by watches.

The mirror reads its prefixes once, then applies the watches' pushed changes in
revision order: nobody polls. Each change wakes whoever waits and calls the
listener (the supervisor's queue). Node and join records are parsed once, when
they change, and joins are counted per round, so a coordinator's question
"can this round complete?" costs O(1) however many nodes there are. A record
this version cannot read is logged and ignored, never trusted.

Most nodes mirror only the few small keys every node needs
(:data:`LIGHT_PREFIXES`); the coordinator also mirrors every node's records.
The watch-following tasks run under the :class:`~rallypoint.tasks.TaskOwner`
the mirror is given, and waits go through the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from rallypoint.clock import Clock
from rallypoint.rendezvous.machine import View
from rallypoint.rendezvous.records import (
    DONE_PREFIX,
    JOB_PREFIX,
    JOIN_PREFIX,
    RESTARTS_KEY,
    NodeRecord,
    RendezvousStateError,
    RoundRecord,
    decode_join,
)
from rallypoint.store import KeyValueStore, StoreError, WatchStream
from rallypoint.tasks import TaskOwner

logger = logging.getLogger(__name__)
T = TypeVar("T")

LIGHT_PREFIXES = (JOB_PREFIX,)
FULL_PREFIXES = (JOB_PREFIX, JOIN_PREFIX, DONE_PREFIX)


class StoreMirror:
    """The keys under some prefixes, as last pushed by the store."""

    def __init__(
        self,
        client: KeyValueStore,
        clock: Clock,
        owner: TaskOwner,
        prefixes: Sequence[str] = LIGHT_PREFIXES,
    ) -> None:
        self._client, self._clock, self._owner = client, clock, owner
        self._prefixes = tuple(prefixes)
        self.keys: dict[str, str] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.joins: dict[str, int] = {}
        self.counts: Counter[int] = Counter()
        self.done_counts: Counter[int] = Counter()
        self.changed = asyncio.Event()
        self.version = 0  # bumped on every change: a waiter that did I/O misses nothing
        self.lost: StoreError | None = None
        self.listener: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Watch every prefix, then read it, then follow it from a task of the mirror's owner.

        The watch is opened first and the snapshot read second, so nothing is
        missed in between; pushed changes the snapshot already holds (revision
        not above it) are skipped. No replay from the store's history is needed.
        """
        for prefix in self._prefixes:
            watch = await self._client.watch(prefix)
            snapshot = await self._client.range(prefix)
            for kv in snapshot.entries:
                self._apply(kv.key, kv.value, kv.revision)
            follow = self._follow(watch, snapshot.revision)
            self._tasks.append(self._owner.spawn(follow, f"mirror-{prefix}"))

    async def _follow(self, watch: WatchStream, floor: int) -> None:
        try:
            async for event in watch:
                if event.revision <= floor:
                    continue  # already in the snapshot
                self._apply(event.key, event.value, event.revision)
                self._notify()
        except StoreError as exc:
            self.lost = exc
            self._notify()

    def _apply(self, key: str, value: str | None, revision: int) -> None:
        if key.startswith(DONE_PREFIX):
            self._count_done(key, value)
        if value is None:
            self.keys.pop(key, None)
        else:
            self.keys[key] = value
        if key.startswith(JOIN_PREFIX):
            self._set_join(key[len(JOIN_PREFIX) :], value)

    def _count_done(self, key: str, value: str | None) -> None:
        round_text = key[len(DONE_PREFIX) :].partition("/")[0]
        if not round_text.isdigit() or (key in self.keys) == (value is not None):
            return
        self.done_counts[int(round_text)] += 1 if value is not None else -1

    def _set_join(self, name: str, value: str | None) -> None:
        """A join record is the node itself and the round it wants: keep both, and the counts."""
        old = self.joins.pop(name, None)
        self.nodes.pop(name, None)
        if old is not None:
            self.counts[old] -= 1
        if value is None:
            return
        try:
            node, target = decode_join(value)
        except RendezvousStateError as exc:
            logger.warning("ignoring the join record of %s: %s", name, exc)
            return
        self.nodes[name] = node
        self.joins[name] = target
        self.counts[target] += 1

    def _notify(self) -> None:
        self.version += 1
        self.changed.set()
        if self.listener is not None:
            self.listener()

    def mark_lost(self, error: StoreError) -> None:
        """Record that this node lost the store (e.g. its lease), and tell whoever listens."""
        self.lost = error
        self._notify()

    def wake(self) -> None:
        """Wake every waiter and the listener, as a change would (they look again)."""
        self._notify()

    async def wait_change(self, timeout: float | None, since: int | None = None) -> None:
        """Wait until the next change (or ``timeout`` seconds).

        Args:
            timeout: seconds to wait at most; None waits for a change.
            since: a :attr:`version` read before the caller last looked; if the
                mirror changed after it, return at once.
        """
        if since is not None and since != self.version:
            return
        self.changed.clear()
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with contextlib.suppress(TimeoutError):
            await self._clock.wait_until(self.changed.wait(), deadline)

    async def close(self) -> None:
        """Stop following the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def one(self, key: str, parse: Callable[[str], T]) -> T | None:
        """The parsed value of ``key``, or None (absent or unreadable)."""
        text = self.keys.get(key)
        if text is None:
            return None
        try:
            return parse(text)
        except RendezvousStateError as exc:
            logger.warning("ignoring store key %s: %s", key, exc)
            return None

    def restarts(self) -> int:
        """The job-wide restart count."""
        try:
            return int(self.keys.get(RESTARTS_KEY, "0"))
        except ValueError:
            return 0

    def view(self, last_round: RoundRecord | None) -> View:
        """The coordinator's view: live nodes, joins and their counts, without copies.

        A join whose node record is already gone (both vanish with their lease,
        one event after the other) may be counted for a moment; the machine
        only ever completes a round with nodes that are alive.
        """
        return View(self.nodes, self.joins, last_round, self.restarts(), self.counts)

    def done_count(self, round_number: int) -> int:
        """How many nodes reported success in ``round_number``."""
        return self.done_counts.get(round_number, 0)
