"""A local copy of the store's rendezvous keys, kept current by one watch.

The mirror reads every key once, then applies the watch's pushed changes in
revision order: nobody polls. Each change wakes whoever waits on it and calls
the listener (the supervisor's queue), and :meth:`StoreMirror.view` turns the
keys into a :class:`~rallypoint.rendezvous.machine.View` for the pure machine.
A record this version cannot read is logged and ignored, never trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from rallypoint.rendezvous.machine import View
from rallypoint.rendezvous.records import (
    CLOSED_KEY,
    DONE_PREFIX,
    JOIN_PREFIX,
    NODE_PREFIX,
    RESTARTS_KEY,
    ROUND_KEY,
    RendezvousStateError,
    decode_closed,
    decode_join,
    decode_node,
    decode_round,
)
from rallypoint.store import RevisionCompactedError, StoreClient, StoreError

logger = logging.getLogger(__name__)
T = TypeVar("T")


class StoreMirror:
    """Every key of the job's store, as last pushed by the server."""

    def __init__(self, client: StoreClient) -> None:
        self._client = client
        self.keys: dict[str, str] = {}
        self.revisions: dict[str, int] = {}
        self.changed = asyncio.Event()
        self.lost: StoreError | None = None
        self.listener: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read everything, then follow the watch from a task this mirror owns."""
        start = await self._reload()
        self._task = asyncio.create_task(self._follow(start), name="rendezvous-mirror")

    async def _reload(self) -> int:
        snapshot = await self._client.range("")
        self.keys = {kv.key: kv.value for kv in snapshot.entries}
        self.revisions = {kv.key: kv.revision for kv in snapshot.entries}
        return snapshot.revision + 1

    async def _follow(self, start: int) -> None:
        while True:
            try:
                await self._apply_watch(start)
            except RevisionCompactedError:
                start = await self._reload()
                self._notify()
            except StoreError as exc:
                self.lost = exc
                self._notify()
                return

    async def _apply_watch(self, start: int) -> None:
        async for event in await self._client.watch("", start_revision=start):
            if event.value is None:
                self.keys.pop(event.key, None)
                self.revisions.pop(event.key, None)
            else:
                self.keys[event.key] = event.value
                self.revisions[event.key] = event.revision
            start = event.revision + 1
            self._notify()

    def _notify(self) -> None:
        self.changed.set()
        if self.listener is not None:
            self.listener()

    async def wait_change(self, timeout: float | None) -> None:
        """Wait until the next change (or ``timeout`` seconds)."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def close(self) -> None:
        """Stop following the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _parsed(self, prefix: str, parse: Callable[[str], T]) -> dict[str, T]:
        found: dict[str, T] = {}
        for key, value in self.keys.items():
            if key.startswith(prefix):
                try:
                    found[key[len(prefix) :]] = parse(value)
                except RendezvousStateError as exc:
                    logger.warning("ignoring store key %s: %s", key, exc)
        return found

    def view(self) -> View:
        """The store's rendezvous state as the machine reads it."""
        nodes = self._parsed(NODE_PREFIX, decode_node)
        joins = self._parsed(JOIN_PREFIX, decode_join)
        return View(
            nodes=nodes,
            joins=joins,
            last_round=self._one(ROUND_KEY, decode_round),
            closed=self._one(CLOSED_KEY, decode_closed),
            restarts=self._restarts(),
        )

    def _one(self, key: str, parse: Callable[[str], T]) -> T | None:
        text = self.keys.get(key)
        if text is None:
            return None
        try:
            return parse(text)
        except RendezvousStateError as exc:
            logger.warning("ignoring store key %s: %s", key, exc)
            return None

    def _restarts(self) -> int:
        try:
            return int(self.keys.get(RESTARTS_KEY, "0"))
        except ValueError:
            return 0

    def done(self, round_number: int) -> set[str]:
        """Nodes that reported success in ``round_number``."""
        prefix = f"{DONE_PREFIX}{round_number}/"
        return {k[len(prefix) :] for k in self.keys if k.startswith(prefix)}
