"""The store's TCP server: the only module of the store that binds a socket.

Design note
-----------
The server is a thin driver around two pure parts: the codec (``wire``) and the state
(``state.StoreState``). Each accepted socket is a ``_connection.StoreConnection``, an
``asyncio.Protocol`` that (1) sends a ``Challenge``, (2) waits at most
``handshake_timeout`` for a ``Hello`` whose run id and HMAC proof are right, refusing and
closing otherwise, then (3) answers each request in order. Requests are handled
synchronously inside ``data_received``, so the state needs no locks and a request never
waits on a future or a task switch; the replies and watch events a connection gets during
one loop iteration leave in a single write (see ``_connection`` for the write batching
and flow control).

A broken frame (oversized, not UTF-8/JSON, unknown type, bad fields) closes only the
connection that sent it; the others never notice. A connection whose socket closes has its
watches removed and its leases ended, which deletes its keys and pushes those deletions to
every watcher at once: a dead agent's records vanish without waiting for a TTL.

Lease time comes from the injected clock (anything with ``monotonic()``). Exactly one
loop timer is armed, for the earliest lease deadline, and it is re-armed whenever that
deadline changes (grant, keep-alive, revoke, expiry); there is no periodic polling. Before
each request the state is also expired up to "now", so a timer that fires late can never
keep a lease alive.

Pushed watch events are queued without waiting; a watcher whose unread output grows past
``max_write_buffer`` is disconnected rather than allowed to exhaust the server's memory.
"""

from __future__ import annotations

import asyncio
import logging

from rallypoint.clock import SystemClock
from rallypoint.store import _handlers as handlers
from rallypoint.store._connection import Limits, Outbox, StoreConnection
from rallypoint.store._errors import ErrorCode, FrameTooLargeError, StoreRequestError
from rallypoint.store.clock import MonotonicClock
from rallypoint.store.secret import check_proof
from rallypoint.store.state import DEFAULT_HISTORY_LIMIT, StoreState
from rallypoint.store.wire import DEFAULT_MAX_FRAME, ErrorReply, Hello, Message, Request

__all__ = ["StoreServer"]

logger = logging.getLogger(__name__)


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
        self._service = _Service(
            run_id,
            secret,
            clock if clock is not None else SystemClock(),
            StoreState(history_limit),
            Limits(max_frame, handshake_timeout, max_write_buffer),
        )
        self._server: asyncio.Server | None = None

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
        return self._service.state

    async def start(self) -> None:
        """Bind ``host:port`` and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._service.accept, self._host, self._port)
        logger.info("store for run %s listening on %s:%d", self._run_id, self._host, self.port)

    async def close(self) -> None:
        """Stop listening, drop every connection and cancel the lease timer."""
        if self._server is not None:
            self._server.close()
        await self._service.abort_all()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._service.cancel_timer()

    async def __aenter__(self) -> StoreServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _Service:
    """The session logic behind every connection: handshake checks, requests, leases.

    Implements ``_connection.ConnectionHost``.
    """

    def __init__(
        self,
        run_id: str,
        secret: bytes | None,
        clock: MonotonicClock,
        state: StoreState,
        limits: Limits,
    ) -> None:
        self.state = state
        self._run_id = run_id
        self._secret = secret
        self._clock = clock
        self._limits = limits
        self._outbox = Outbox()
        self._sessions: dict[int, StoreConnection] = {}
        self._live: set[StoreConnection] = set()
        self._next_owner = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None

    def accept(self) -> StoreConnection:
        """The protocol factory: a connection with a fresh session id."""
        owner = self._next_owner
        self._next_owner += 1
        return StoreConnection(self, owner, self._outbox, self._limits)

    async def abort_all(self) -> None:
        """Abort every open socket and wait until each has ended its session."""
        conns = list(self._live)
        for conn in conns:
            conn.abort()
        await asyncio.gather(*(conn.closed for conn in conns))

    # --- ConnectionHost ---------------------------------------------------------------------

    def refusal(self, msg: Message, nonce: str) -> str | None:
        """Why ``msg`` is not an acceptable ``Hello``, or None if it is."""
        if not isinstance(msg, Hello):
            return f"expected Hello as the first message, got {type(msg).__name__}"
        if msg.run_id != self._run_id:
            return f"run id {msg.run_id!r} does not match this store's run id {self._run_id!r}"
        return check_proof(self._secret, nonce, msg.run_id, msg.proof)

    def opened(self, conn: StoreConnection) -> None:
        """Track a new socket and its session."""
        self._live.add(conn)
        self._sessions[conn.owner] = conn

    def ended(self, conn: StoreConnection) -> None:
        """End a session once: drop its watches and leases, push the deletions."""
        if self._sessions.pop(conn.owner, None) is None:
            return
        self.state.drop_owner(conn.owner)
        self._flush()

    def lost(self, conn: StoreConnection) -> None:
        """Forget a fully closed socket."""
        self._live.discard(conn)

    def serve(self, conn: StoreConnection, request: Request) -> None:
        """Apply one request, queue its reply, then deliver the watch events it caused."""
        now = self._clock.monotonic()
        self.state.expire(now)
        try:
            reply: Message = handlers.handle(self.state, conn.owner, request, now)
        except StoreRequestError as exc:
            reply = ErrorReply(request.id, exc.code, str(exc))
        try:
            conn.send(reply)
        except FrameTooLargeError as exc:
            conn.send(ErrorReply(request.id, ErrorCode.TOO_LARGE, str(exc)))
        self._flush()

    def _flush(self) -> None:
        """Queue pending watch events for their owners and re-arm the lease timer."""
        for delivery in self.state.take_deliveries():
            conn = self._sessions.get(delivery.owner)
            if conn is not None:
                conn.push(delivery.event)
        self._rearm()

    # --- lease timer -----------------------------------------------------------------------

    def _rearm(self) -> None:
        deadline = self.state.next_deadline()
        if deadline == self._timer_deadline:
            return
        self.cancel_timer()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
            self._timer_deadline = deadline

    def cancel_timer(self) -> None:
        """Disarm the lease timer (the server is closing)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        expired = self.state.expire(self._clock.monotonic())
        if expired:
            logger.info("store leases expired: %s", expired)
        self._flush()
