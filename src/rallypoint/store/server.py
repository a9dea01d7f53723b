"""The store's TCP server: the only module of the store that binds a socket.

Design note
-----------
The server is a thin driver around two pure parts: the codec (``wire``) and the state
(``state.StoreState``). Every connection gets one coroutine that (1) sends a
``Challenge``, (2) waits at most ``handshake_timeout`` for a ``Hello`` whose run id and
HMAC proof are right, refusing and closing otherwise, then (3) reads frames and answers
each request in order. Requests are handled synchronously on the event loop, so the state
needs no locks, and the connection awaits ``drain()`` after each reply so that a client
which does not read its replies stops being read from.

A broken frame (oversized, not UTF-8/JSON, unknown type, bad fields) closes only the
connection that sent it; the others never notice. A connection whose socket closes has its
watches removed and its leases ended, which deletes its keys and pushes those deletions to
every watcher at once: a dead agent's records vanish without waiting for a TTL.

Lease time comes from the injected clock (anything with ``monotonic()``). Exactly one
loop timer is armed, for the earliest lease deadline, and it is re-armed whenever that
deadline changes (grant, keep-alive, revoke, expiry); there is no periodic polling. Before
each request the state is also expired up to "now", so a timer that fires late can never
keep a lease alive.

Pushed watch events are written without waiting; a watcher whose unread output grows past
``max_write_buffer`` is disconnected rather than allowed to exhaust the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque

from rallypoint.clock import SystemClock
from rallypoint.store import _handlers as handlers
from rallypoint.store._errors import (
    ErrorCode,
    FrameTooLargeError,
    StoreProtocolError,
    StoreRequestError,
)
from rallypoint.store.clock import MonotonicClock
from rallypoint.store.secret import check_proof
from rallypoint.store.state import DEFAULT_HISTORY_LIMIT, StoreState
from rallypoint.store.wire import (
    CLIENT_MESSAGES,
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    Challenge,
    ErrorReply,
    FrameDecoder,
    Hello,
    Message,
    Refused,
    Request,
    Welcome,
    encode,
)

__all__ = ["StoreServer"]

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024


class _Connection:
    """One accepted socket: a reader that yields whole messages, and its writer."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self.peer = str(writer.get_extra_info("peername"))
        self._decoder = FrameDecoder(max_frame, CLIENT_MESSAGES)
        self._ready: deque[Message] = deque()

    async def next_message(self) -> Message | None:
        """Return the next message, or None at end of stream; raises ProtocolError."""
        while not self._ready:
            data = await self.reader.read(_READ_SIZE)
            if not data:
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    def send(self, msg: Message) -> None:
        """Queue one message on the socket without waiting."""
        self.writer.write(encode(msg, self.max_frame))


class StoreServer:
    """Hosts one store over TCP.

    Args:
        host: the address to bind; only this address is bound.
        port: the port, or 0 for any free one (read it back from ``port``).
        run_id: the job's run id; clients with another one are refused.
        secret: the shared secret clients must prove, or None for an open store.
        clock: the source of lease time (``rallypoint.clock.SystemClock`` by default).
        max_frame: the largest frame accepted or sent, in bytes.
        handshake_timeout: seconds a new connection may take to send a valid ``Hello``.
        history_limit: how many past changes to keep for watch replay.
        max_write_buffer: bytes of unread output after which a client is dropped.
    """

    def __init__(
        self,
        host: str,
        port: int,
        run_id: str,
        secret: bytes | None,
        clock: MonotonicClock | None = None,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float = 10.0,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        max_write_buffer: int = 4 * DEFAULT_MAX_FRAME,
    ) -> None:
        self._host = host
        self._port = port
        self._run_id = run_id
        self._secret = secret
        self._clock: MonotonicClock = clock if clock is not None else SystemClock()
        self._max_frame = max_frame
        self._handshake_timeout = handshake_timeout
        self._max_write_buffer = max_write_buffer
        self._state = StoreState(history_limit)
        self._server: asyncio.Server | None = None
        self._sessions: dict[int, _Connection] = {}
        self._connections: dict[_Connection, asyncio.Task[None]] = {}
        self._next_owner = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None:
            raise RuntimeError("the store server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def state(self) -> StoreState:
        """The store's state, for inspection in tests and status pages."""
        return self._state

    async def start(self) -> None:
        """Bind ``host:port`` and start accepting connections."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        logger.info("store for run %s listening on %s:%d", self._run_id, self._host, self.port)

    async def close(self) -> None:
        """Stop listening, drop every connection and cancel the lease timer."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections.values())
        for conn in self._connections:
            conn.writer.transport.abort()  # its coroutine sees end of stream and returns
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._cancel_timer()

    async def __aenter__(self) -> StoreServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- one connection ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # always inside the task start_server created
        conn = _Connection(reader, writer, self._max_frame)
        self._connections[conn] = task
        owner = self._next_owner
        self._next_owner += 1
        try:
            await self._run_session(owner, conn)
        except StoreProtocolError as exc:
            logger.warning("store dropping %s: %s", conn.peer, exc)
            with contextlib.suppress(StoreProtocolError):
                conn.send(Refused(f"protocol error: {exc}"))
        except OSError as exc:
            logger.info("store connection %s failed: %s", conn.peer, exc)
        finally:
            self._end_session(owner)
            del self._connections[conn]
            await _close_writer(writer)

    async def _run_session(self, owner: int, conn: _Connection) -> None:
        if not await self._handshake(conn):
            return
        self._sessions[owner] = conn
        while (msg := await conn.next_message()) is not None:
            if not isinstance(msg, Request):
                raise StoreProtocolError(f"unexpected {type(msg).__name__} after handshake")
            self._reply(owner, conn, msg)
            await conn.writer.drain()

    async def _handshake(self, conn: _Connection) -> bool:
        nonce = secrets.token_hex(16)
        conn.send(Challenge(nonce, PROTOCOL_VERSION))
        try:
            async with asyncio.timeout(self._handshake_timeout):
                first = await conn.next_message()
        except TimeoutError:
            timeout = self._handshake_timeout
            logger.warning("store dropping %s: no Hello within %ss", conn.peer, timeout)
            return False
        if first is None:
            logger.info("store connection %s closed during the handshake", conn.peer)
            return False
        reason = self._refusal(first, nonce)
        if reason is not None:
            logger.warning("store refused %s: %s", conn.peer, reason)
            conn.send(Refused(reason))
            return False
        conn.send(Welcome())
        return True

    def _refusal(self, msg: Message, nonce: str) -> str | None:
        if not isinstance(msg, Hello):
            return f"expected Hello as the first message, got {type(msg).__name__}"
        if msg.run_id != self._run_id:
            return f"run id {msg.run_id!r} does not match this store's run id {self._run_id!r}"
        return check_proof(self._secret, nonce, msg.run_id, msg.proof)

    def _end_session(self, owner: int) -> None:
        self._sessions.pop(owner, None)
        self._state.drop_owner(owner)
        self._flush()

    # --- requests ------------------------------------------------------------------------

    def _reply(self, owner: int, conn: _Connection, request: Request) -> None:
        now = self._clock.monotonic()
        self._state.expire(now)
        try:
            reply: Message = handlers.handle(self._state, owner, request, now)
        except StoreRequestError as exc:
            reply = ErrorReply(request.id, exc.code, str(exc))
        try:
            conn.send(reply)
        except FrameTooLargeError as exc:
            conn.send(ErrorReply(request.id, ErrorCode.TOO_LARGE, str(exc)))
        self._flush()

    def _flush(self) -> None:
        """Write queued watch events to their owners and re-arm the lease timer."""
        for delivery in self._state.take_deliveries():
            conn = self._sessions.get(delivery.owner)
            if conn is not None:
                self._push(conn, delivery.event)
        self._rearm()

    def _push(self, conn: _Connection, event: Message) -> None:
        transport = conn.writer.transport
        if transport.is_closing():
            return
        conn.send(event)
        if transport.get_write_buffer_size() > self._max_write_buffer:
            logger.warning("store dropping %s: it does not read its watch events", conn.peer)
            transport.abort()

    # --- lease timer -----------------------------------------------------------------------

    def _rearm(self) -> None:
        deadline = self._state.next_deadline()
        if deadline == self._timer_deadline:
            return
        self._cancel_timer()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
            self._timer_deadline = deadline

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        expired = self._state.expire(self._clock.monotonic())
        if expired:
            logger.info("store leases expired: %s", expired)
        self._flush()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
