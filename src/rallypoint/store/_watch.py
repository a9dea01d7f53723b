"""The client-side stream of one watch's events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from rallypoint.store._errors import StoreError
from rallypoint.store.messages import WatchEvent

WatchItem = WatchEvent | StoreError | None
"""What the client's reader puts in a watch queue: an event, the error that ended the
connection, or None once the watch was cancelled."""


class Watch:
    """The events of one watch, in order; iterate with ``async for``.

    Iteration raises ``StoreConnectionError`` (or the error that ended the connection)
    when the connection is lost, and stops after ``cancel``.

    Args:
        watch_id: the id the store assigned.
        queue: filled by the client's reader task.
        unwatch: the client's ``unwatch`` method.
    """

    def __init__(
        self,
        watch_id: int,
        queue: asyncio.Queue[WatchItem],
        unwatch: Callable[[int], Awaitable[None]],
    ) -> None:
        self._id = watch_id
        self._queue = queue
        self._unwatch = unwatch

    @property
    def id(self) -> int:
        """The watch id the store assigned."""
        return self._id

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        return await next_event(self._queue)

    async def cancel(self) -> None:
        """Stop the watch on the server; iteration ends after the events already queued."""
        await self._unwatch(self._id)


async def next_event(queue: asyncio.Queue[WatchItem]) -> WatchEvent:
    """The next event of a watch's queue, for every backend's watch.

    The end of the watch (None: cancelled; an exception: the connection's error)
    stays in the queue, so every later call sees it too.
    """
    item = await queue.get()
    if isinstance(item, WatchEvent):
        return item
    queue.put_nowait(item)
    if item is None:
        raise StopAsyncIteration
    raise item
