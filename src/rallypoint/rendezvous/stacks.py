r"""This node's stack record in the rendezvous store, and the other nodes' (see hangs/board.py).

Design note: :meth:`StoreStackBoard.offer` never waits: it keeps the latest
text, and one writer task puts it under the node's lease, then sleeps one
sample period before it writes again, so a node writes at most once per
period however often its ranks' stacks change, and only the latest text.
A failed write is logged and dropped (the next change writes again): a hang
report must never break the rendezvous. :meth:`others` reads every node's
record once, when this node's own ranks look stuck. The culprit's node
:meth:`announce`\ s the hang under ``job/hang`` before it stops the culprit, so
that a waiting node whose ranks then fail (their peer gone) names the culprit
in its own summary, whichever node tells the job first.
"""

from __future__ import annotations

import contextlib
import logging

from rallypoint.clock import Clock
from rallypoint.hangs.board import HANG_KEY, STACKS_PREFIX
from rallypoint.rendezvous.mirror import StoreMirror
from rallypoint.store import KeyValueStore, StoreError
from rallypoint.tasks import TaskOwner

logger = logging.getLogger(__name__)


class StoreStackBoard:
    """Publishes this node's stack record; reads the others'."""

    def __init__(
        self,
        client: KeyValueStore,
        node: str,
        lease: int,
        clock: Clock,
        owner: TaskOwner,
        mirror: StoreMirror | None = None,
    ) -> None:
        self.node, self._mirror = node, mirror
        self._client, self._lease, self._clock, self._owner = client, lease, clock, owner
        self._pending: str | None = None
        self._written: str | None = None
        self._writing = False
        self.period = 3.0  # set by the watch to --stack-period

    def offer(self, text: str) -> None:
        """Publish ``text`` soon (at most once per period; only the latest text)."""
        self._pending = text
        if not self._writing and text != self._written:
            self._writing = True
            self._owner.spawn(self._write(), "stack-record")

    async def _write(self) -> None:
        try:
            while self._pending is not None and self._pending != self._written:
                text = self._pending
                try:
                    await self._client.put(STACKS_PREFIX + self.node, text, lease=self._lease)
                    self._written = text
                except StoreError as exc:
                    logger.warning("could not publish this node's stacks: %s", exc)
                    return
                await self._clock.sleep(self.period)
        finally:
            self._writing = False

    async def others(self) -> dict[str, str]:
        """Every other node's record (node id -> text); none when the store fails."""
        with contextlib.suppress(StoreError):
            found = await self._client.range(STACKS_PREFIX)
            return {
                kv.key.removeprefix(STACKS_PREFIX): kv.value
                for kv in found.entries
                if kv.key != STACKS_PREFIX + self.node
            }
        logger.warning("could not read the other nodes' stacks")
        return {}

    async def announce(self, round_: int, text: str) -> None:
        """Put ``job/hang`` (every node follows ``job/``): its node names the culprit to all."""
        with contextlib.suppress(StoreError):
            await self._client.put(HANG_KEY, f"{round_} {text}")  # outlives this node's lease

    def announced(self, round_: int) -> str:
        """The culprit a node announced for ``round_``, as the mirror last saw it."""
        text = self._mirror.keys.get(HANG_KEY, "") if self._mirror is not None else ""
        head, _, rest = text.partition(" ")
        return rest if head == str(round_) else ""
