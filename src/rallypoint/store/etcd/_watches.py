"""``EtcdWatch``: one etcd watch, followed across endpoints without losing an event.

Design note
-----------
Watches are gateway streams (one connection each). A watch remembers the revision of the
last event it delivered; when its connection breaks it is opened again, on the next
endpoint if need be, from that revision + 1, so no event is lost or repeated. The store
maps ``start_revision=N`` to etcd's inclusive ``start_revision=N + 1`` (with N capped at
the current revision, since the built-in store delivers every later change whatever N
is, while etcd would skip those before N + 1); a compacted start raises
``RevisionCompactedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from rallypoint.store._errors import (
    ErrorCode,
    RevisionCompactedError,
    StoreConnectionError,
    StoreError,
    StoreProtocolError,
    StoreRequestError,
)
from rallypoint.store._watch import WatchItem, next_event
from rallypoint.store.messages import EventKind, WatchEvent

from ._codec import header_revision, int_field, prefix_range, unb64
from ._gateway import Gateway
from ._http import Endpoint, LineStream, NotSent
from ._translate import gateway_error, translate

__all__ = ["EtcdWatch"]

logger = logging.getLogger(__name__)


class WatchHost(Protocol):
    """What a watch needs of its store."""

    @property
    def gateway(self) -> Gateway:
        """The store's gateway to etcd."""
        ...

    @property
    def timeout(self) -> float:
        """Seconds allowed to confirm the watch, and to find an endpoint again."""
        ...

    def full_key(self, key: str) -> str:
        """The etcd key of a store key."""
        ...

    def strip_key(self, full: str) -> str:
        """The store key of an etcd key."""
        ...

    def forget(self, watch: EtcdWatch) -> None:
        """Drop a finished watch from the store's books."""
        ...


class EtcdWatch:
    """The events of one etcd watch, in revision order; iterate with ``async for``.

    It follows the store across endpoints: when its stream breaks it reopens from the
    revision after the last event it delivered. Iteration raises the error that ended it
    (``StoreConnectionError`` when no endpoint answered within the store's timeout,
    ``RevisionCompactedError`` when the history it needs was compacted) and stops after
    ``cancel``.
    """

    def __init__(self, store: WatchHost, watch_id: int, prefix: str, after: int | None) -> None:
        self._store = store
        self._id = watch_id
        self._key = store.full_key(prefix)
        self._after = after  # the last revision already seen (None: from now)
        self._queue: asyncio.Queue[WatchItem] = asyncio.Queue()
        self._created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stream: LineStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._live = False

    @property
    def id(self) -> int:
        """The watch id (unique within its store)."""
        return self._id

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        return await next_event(self._queue)

    async def start(self) -> None:
        """Open the stream and wait until etcd confirms the watch (or refuses it)."""
        self._task = asyncio.create_task(self._run(), name=f"etcd-watch-{self._id}")
        try:
            async with asyncio.timeout(self._store.timeout):
                await asyncio.shield(self._created)
        except TimeoutError:
            await self._stop(None)
            raise StoreConnectionError(
                f"etcd did not confirm a watch within {self._store.timeout:g} s "
                f"({self._store.gateway.describe()})"
            ) from None
        except BaseException:
            await self._stop(None)
            raise

    async def cancel(self) -> None:
        """Stop the watch; iteration ends after the events already queued."""
        await self._stop(None)

    def fail(self, error: StoreError) -> None:
        """End the watch with ``error`` (the store was closed or lost)."""
        self._end(error)
        if self._task is not None:
            self._task.cancel()
        if self._stream is not None:
            self._stream.connection.abort()

    async def _stop(self, item: StoreError | None) -> None:
        self._end(item)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._stream is not None:
            self._stream.connection.abort()
        self._store.forget(self)

    def _end(self, item: StoreError | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(item)
        if not self._created.done():
            if item is None:
                self._created.set_exception(StoreConnectionError("the watch was cancelled"))
            else:
                self._created.set_exception(item)
            self._created.exception()  # retrieved: no "never retrieved" warning

    async def _run(self) -> None:
        try:
            await self._follow()
        except StoreError as exc:
            self._end(exc)
        finally:
            if self._stream is not None:
                self._stream.connection.abort()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        failures: dict[Endpoint, str] = {}
        lost_since: float | None = None
        backoff = 0.05
        while True:
            for endpoint in self._store.gateway.rotation():
                self._live = False
                await self._try(endpoint, failures)
                if self._live:  # it had worked: the outage starts now
                    failures = {endpoint: failures[endpoint]}
                    lost_since, backoff = None, 0.05
                    logger.info("etcd watch %d moving on: %s", self._id, failures[endpoint])
            now = loop.time()
            lost_since = now if lost_since is None else lost_since
            if not self._created.done() or now - lost_since > self._store.timeout:
                listing = "; ".join(f"{e}: {m}" for e, m in failures.items())
                raise StoreConnectionError(f"the etcd watch lost every endpoint: {listing}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    async def _try(self, endpoint: Endpoint, failures: dict[Endpoint, str]) -> None:
        """Follow the watch on ``endpoint`` until its stream breaks; note why in ``failures``."""
        try:
            await self._stream_from(endpoint)
        except NotSent as exc:
            failures[endpoint] = f"cannot connect ({exc})"
        except StoreConnectionError as exc:
            failures[endpoint] = str(exc)
        if self._stream is not None:
            self._stream.connection.abort()
            self._stream = None

    async def _stream_from(self, endpoint: Endpoint) -> None:
        create = prefix_range(self._key)
        if self._after is not None:
            create["start_revision"] = str(self._after + 1)
        request = {"create_request": create}
        self._stream = await self._store.gateway.stream("/v3/watch", request, endpoint)
        while True:
            message = await self._stream.next()
            if message is None:
                raise StoreConnectionError(f"etcd at {endpoint} ended the watch stream")
            result = _watch_result(message, endpoint, self._after)
            if result.get("created"):
                self._confirm(result, endpoint)
            for raw in result.get("events", ()):
                self._deliver(raw)

    def _confirm(self, result: dict[str, Any], endpoint: Endpoint) -> None:
        """etcd created the watch on ``endpoint``: it is live, and ``start`` may return."""
        if self._after is None:
            self._after = header_revision(result)
        self._store.gateway.prefer(endpoint)
        self._live = True
        if not self._created.done():
            self._created.set_result(None)

    def _deliver(self, raw: dict[str, Any]) -> None:
        kv = raw.get("kv", {})
        revision = int_field(kv, "mod_revision")
        if self._after is not None and revision <= self._after:
            return  # already delivered before a reconnect
        key = self._store.strip_key(unb64(kv.get("key")))
        if raw.get("type", "PUT") == "DELETE":
            event = WatchEvent(self._id, key, None, revision, EventKind.DELETE)
        else:
            event = WatchEvent(self._id, key, unb64(kv.get("value")), revision, EventKind.PUT)
        self._after = revision
        if not self._ended:
            self._queue.put_nowait(event)


def _watch_result(message: dict[str, Any], endpoint: Endpoint, after: int | None) -> dict[str, Any]:
    """The ``result`` of a watch stream message.

    Raises:
        StoreError: the message reports an error, a compaction or a cancelled watch.
    """
    if "error" in message:
        raise translate(gateway_error(200, message), endpoint, "watch")
    result = message.get("result", {})
    if not isinstance(result, dict):
        raise StoreProtocolError(f"etcd at {endpoint} sent a bad watch message")
    if int_field(result, "compact_revision"):
        raise RevisionCompactedError(
            f"etcd at {endpoint} compacted the changes after revision {after} "
            f"(compacted up to {int_field(result, 'compact_revision')}); re-read with range"
        )
    if result.get("canceled"):
        reason = result.get("cancel_reason") or "no reason given"
        raise StoreRequestError(
            ErrorCode.INVALID_ARGUMENT, f"etcd at {endpoint} cancelled the watch: {reason}"
        )
    return result
