"""The asyncio client of the store.

Design note
-----------
One connection carries many requests at once: each gets a fresh integer id and a future,
the request is written, and a single background reader task (owned by the client and
cancelled by ``close``) resolves the future whose id the reply echoes. Pushed watch events
go to the queue of their watch. The queue is registered by the reader itself when it sees
the ``WatchReply``, before any event that follows it, so no event can arrive for a watch
the client does not know yet.

This is the one place where socket errors enter the store's code: ``OSError`` and end of
stream are turned into ``StoreConnectionError`` here, once, with ``raise ... from exc``.
When the connection is lost every pending call and every watch iterator raises that error,
and later calls raise it at once. Each request has a deadline (``timeout``); missing it
raises ``StoreTimeoutError`` and leaves the connection usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from rallypoint.store._errors import (
    StoreAuthError,
    StoreConnectionError,
    StoreError,
    StoreProtocolError,
    StoreTimeoutError,
    request_error,
)
from rallypoint.store._watch import Watch, WatchItem
from rallypoint.store.api import CasResult, RangeResult, held_lease
from rallypoint.store.secret import make_proof
from rallypoint.store.wire import (
    DEFAULT_MAX_FRAME,
    PREAMBLE,
    SERVER_MESSAGES,
    AddReply,
    AddRequest,
    CasReply,
    Challenge,
    DeleteRequest,
    ErrorReply,
    FrameDecoder,
    GetReply,
    GetRequest,
    Hello,
    KeyValue,
    LeaseGrantReply,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    Message,
    OkReply,
    PutRequest,
    RangeReply,
    RangeRequest,
    Refused,
    Request,
    UnwatchRequest,
    WatchEvent,
    WatchReply,
    WatchRequest,
    Welcome,
    encode,
)

__all__ = ["StoreClient", "Watch"]

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
_R = TypeVar("_R")


class StoreClient:
    """A connection to a store server; create it with ``await StoreClient.connect(...)``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        max_frame: int,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._max_frame = max_frame
        self._decoder = FrameDecoder(max_frame, SERVER_MESSAGES)
        self._ready: deque[Message] = deque()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._new_watches: dict[int, asyncio.Queue[WatchItem]] = {}
        self._watches: dict[int, asyncio.Queue[WatchItem]] = {}
        self._failure: StoreError | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        run_id: str,
        secret: bytes | None,
        timeout: float = 30.0,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> StoreClient:
        """Connect, authenticate, and start the reader task.

        Args:
            host: the store's address.
            port: the store's port.
            run_id: the job's run id; must match the store's.
            secret: the shared secret, or None for an open store.
            timeout: seconds allowed for connecting, and for each request later.
            max_frame: the largest frame sent or accepted, in bytes.

        Returns:
            The connected client.

        Raises:
            StoreConnectionError: the store cannot be reached (``StoreTimeoutError`` if slow).
            StoreAuthError: the store refused us; the message gives its reason.
            StoreProtocolError: the store spoke something else.
        """
        reader, writer = await _open(host, port, timeout)
        writer.write(PREAMBLE)
        client = cls(reader, writer, timeout, max_frame)
        try:
            async with asyncio.timeout(timeout):
                await client._handshake(run_id, secret)
        except TimeoutError:
            await client._close_transport()
            raise StoreTimeoutError(
                f"store at {host}:{port} did not finish the handshake"
            ) from None
        except BaseException:
            await client._close_transport()
            raise
        client._reader_task = asyncio.create_task(client._read_loop(), name="store-client-reader")
        return client

    @property
    def closed(self) -> bool:
        """True once the connection is lost or closed."""
        return self._failure is not None

    async def close(self) -> None:
        """Close the connection; pending calls and watches raise ``StoreConnectionError``.

        Safe at any moment, also right after the store dropped the connection, and twice.
        """
        self._fail(StoreConnectionError("the store client was closed"))
        task, self._reader_task = self._reader_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_transport()

    async def __aenter__(self) -> StoreClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- operations ------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """Return the key's value and mod revision, or None when absent."""
        reply = await self._call(lambda i: GetRequest(i, key), GetReply)
        return None if reply.value is None else KeyValue(key, reply.value, reply.revision)

    async def range(self, prefix: str) -> RangeResult:
        """Return every key starting with ``prefix`` and the current store revision."""
        reply = await self._call(lambda i: RangeRequest(i, prefix), RangeReply)
        return RangeResult(reply.entries, reply.revision)

    async def put(
        self,
        key: str,
        value: str,
        expected_revision: int | None = None,
        lease: int | None = None,
    ) -> CasResult:
        """Set a key; ``expected_revision`` None = always, 0 = if absent, N = if at N.

        Raises:
            LeaseNotFoundError: ``lease`` has ended.
        """
        request = _put_request(key, value, expected_revision, lease)
        reply = await self._call(request, CasReply)
        return CasResult(reply.ok, reply.revision, reply.value)

    async def delete(self, key: str, expected_revision: int | None = None) -> CasResult:
        """Delete a key under the same condition as ``put``; ok when a key was deleted."""
        reply = await self._call(lambda i: DeleteRequest(i, key, expected_revision), CasReply)
        return CasResult(reply.ok, reply.revision, reply.value)

    async def add(self, key: str, amount: int = 1) -> int:
        """Add to the decimal counter at ``key`` (absent counts as 0); return the total."""
        reply = await self._call(lambda i: AddRequest(i, key, amount), AddReply)
        return reply.value

    async def watch(self, prefix: str, start_revision: int | None = None) -> Watch:
        """Stream every later change under ``prefix``; replay those after ``start_revision``.

        Raises:
            RevisionCompactedError: the store no longer keeps changes that old.
        """
        queue: asyncio.Queue[WatchItem] = asyncio.Queue()
        rid = next(self._ids)
        self._new_watches[rid] = queue
        try:
            reply = await self._call(
                lambda i: WatchRequest(i, prefix, start_revision), WatchReply, rid
            )
        finally:
            self._new_watches.pop(rid, None)
        return Watch(reply.watch_id, queue, self.unwatch)

    async def unwatch(self, watch_id: int) -> None:
        """Stop a watch; its iterator ends."""
        await self._call(lambda i: UnwatchRequest(i, watch_id), OkReply)
        queue = self._watches.pop(watch_id, None)
        if queue is not None:
            queue.put_nowait(None)

    async def lease_grant(self, ttl: float) -> int:
        """Create a lease owned by this connection, ending ``ttl`` s after its last keep-alive."""
        reply = await self._call(lambda i: LeaseGrantRequest(i, ttl), LeaseGrantReply)
        return reply.lease

    async def lease_keepalive(self, lease: int) -> None:
        """Restart the lease's TTL; raises ``LeaseNotFoundError`` if it has ended."""
        await self._call(lambda i: LeaseKeepAliveRequest(i, lease), OkReply)

    async def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys."""
        await self._call(lambda i: LeaseRevokeRequest(i, lease), OkReply)

    def lease(
        self, ttl: float, keepalive_interval: float | None = None
    ) -> AbstractAsyncContextManager[int]:
        """Grant a lease, keep it alive, revoke it on exit (see ``held_lease``)."""
        return held_lease(self, ttl, keepalive_interval)

    # --- request plumbing ------------------------------------------------------------------

    async def _call(
        self, make: Callable[[int], Request], expect: type[_R], rid: int | None = None
    ) -> _R:
        if self._failure is not None:
            raise StoreConnectionError(str(self._failure)) from self._failure
        request = make(next(self._ids) if rid is None else rid)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = future
        try:
            self._writer.write(encode(request, self._max_frame))
            reply = await self._await_reply(request, future)
        finally:
            self._pending.pop(request.id, None)
        return _check_reply(reply, expect)

    async def _await_reply(self, request: Request, future: asyncio.Future[Message]) -> Message:
        try:
            async with asyncio.timeout(self._timeout):
                await self._drain()
                return await future
        except TimeoutError:
            name = type(request).__name__
            raise StoreTimeoutError(f"no reply to {name} within {self._timeout}s") from None

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except OSError as exc:
            raise StoreConnectionError(f"lost the connection to the store: {exc}") from exc

    # --- reading -----------------------------------------------------------------------------

    async def _handshake(self, run_id: str, secret: bytes | None) -> None:
        challenge = await self._next_message()
        if not isinstance(challenge, Challenge):
            raise StoreProtocolError(f"expected a Challenge, got {type(challenge).__name__}")
        proof = make_proof(secret, challenge.nonce, run_id)
        self._writer.write(encode(Hello(run_id, proof), self._max_frame))
        await self._drain()
        answer = await self._next_message()
        if isinstance(answer, Refused):
            raise StoreAuthError(f"the store refused the connection: {answer.reason}")
        if not isinstance(answer, Welcome):
            raise StoreProtocolError(f"expected Welcome, got {type(answer).__name__}")

    async def _next_message(self) -> Message:
        while not self._ready:
            self._ready.extend(self._decoder.feed(await self._recv()))
        return self._ready.popleft()

    async def _recv(self) -> bytes:
        try:
            data = await self._reader.read(_READ_SIZE)
        except OSError as exc:
            raise StoreConnectionError(f"lost the connection to the store: {exc}") from exc
        if not data:
            raise StoreConnectionError("the store closed the connection")
        return data

    async def _read_loop(self) -> None:
        try:
            while True:
                self._dispatch(await self._next_message())
        except StoreError as exc:
            logger.info("store connection ended: %s", exc)
            self._fail(exc)
            self._writer.close()  # not awaited here: close() waits, and may cancel this task

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, WatchEvent):
            queue = self._watches.get(msg.watch_id)
            if queue is not None:
                queue.put_nowait(msg)
            return
        if isinstance(msg, Refused):
            raise StoreConnectionError(f"the store dropped the connection: {msg.reason}")
        if isinstance(msg, Challenge | Welcome):
            raise StoreProtocolError(f"unexpected {type(msg).__name__} after the handshake")
        self._resolve(msg)

    def _resolve(self, reply: Message) -> None:
        rid: int = getattr(reply, "id", -1)
        if isinstance(reply, WatchReply) and rid in self._new_watches:
            self._watches[reply.watch_id] = self._new_watches.pop(rid)
        future = self._pending.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(reply)

    def _fail(self, error: StoreError) -> None:
        if self._failure is not None:
            return
        self._failure = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for queue in self._watches.values():
            queue.put_nowait(error)
        self._watches.clear()

    async def _close_transport(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _put_request(
    key: str, value: str, expected: int | None, lease: int | None
) -> Callable[[int], Request]:
    return lambda i: PutRequest(i, key, value, expected, lease)


def _check_reply(reply: Message, expect: type[_R]) -> _R:
    if isinstance(reply, ErrorReply):
        raise request_error(reply.code, reply.message)
    if not isinstance(reply, expect):
        raise StoreProtocolError(f"expected {expect.__name__}, got {type(reply).__name__}")
    return reply


async def _open(
    host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(host, port)
    except TimeoutError:
        raise StoreTimeoutError(
            f"cannot connect to the store at {host}:{port}: timed out"
        ) from None
    except OSError as exc:
        raise StoreConnectionError(f"cannot connect to the store at {host}:{port}: {exc}") from exc
