"""The store's TCP server: the only module of the store that binds a socket.

Design note
-----------
The server is a thin driver around two pure parts: the codec (``wire``) and the state
(``state.StoreState``). Each accepted socket is a ``_connection.StoreConnection``, an
``asyncio.Protocol`` that (1) sends a ``Challenge``, (2) waits at most
``handshake_timeout`` for a ``Hello`` whose run id and HMAC proof are right, refusing and
closing otherwise, then (3) answers each request in order. Requests are handled
synchronously, so the state needs no locks and a request never waits on a future or a
task switch. ``_admission`` caps the sockets (in all, and still in the handshake), and
``_connection`` bounds each one's input, output and work per loop iteration. The bounds
and how they are enforced are listed in docs/store.md ("Bounds").

A broken frame (oversized, not UTF-8/JSON, unknown type, bad fields, over the decode
budget) closes only the connection that sent it; a bad *value* gets an ``error`` reply.
A connection whose socket closes has its watches removed and its leases ended, which
deletes its keys and pushes those deletions to every watcher at once.

**Leases expire on their owner's silence, measured honestly.** Lease time comes from the
injected clock (anything with ``monotonic()``), and leases are expired only by the lease
timer, never while a request is being served. asyncio runs a due timer only after the
callbacks of the I/O that its loop iteration's ``select`` found, so by the time the timer
looks at a deadline every byte that reached the socket before that moment has been
handed to its connection: a keep-alive that waited in a buffer while the loop was busy
(a long frame, a garbage collection, the host agent's own work) is served first and
renews its lease. Frames a connection has received but not handled yet (see
"bounded work per loop iteration" in ``_connection``) may hold a keep-alive too, so the
leases of a backlogged connection are spared until it has caught up. Exactly one timer is
armed, for the earliest deadline, and re-armed when that deadline changes.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket

from rallypoint.clock import SystemClock
from rallypoint.store import _handlers as handlers
from rallypoint.store._admission import Admission, AdmissionLimits, RefusalLog
from rallypoint.store._connection import Limits, Outbox, StoreConnection
from rallypoint.store._errors import ErrorCode, FrameTooLargeError, StoreRequestError
from rallypoint.store.clock import MonotonicClock
from rallypoint.store.secret import check_proof
from rallypoint.store.state import DEFAULT_QUOTA, Quota, StoreState
from rallypoint.store.wire import DEFAULT_MAX_FRAME, ErrorReply, Hello, Message, Request

__all__ = ["DEFAULT_LIMITS", "AdmissionLimits", "Limits", "Quota", "StoreServer"]

logger = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits(
    max_frame=DEFAULT_MAX_FRAME,
    max_hello=1024,  # a hello is about 150 bytes: run id + 64 hex chars of proof
    handshake_timeout=10.0,
    pause_output=1 << 20,
    max_write_buffer=4 * DEFAULT_MAX_FRAME,
    frames_per_iteration=1024,
    frames_per_turn=32,
)
MAX_CONNECTIONS = 20_000
MAX_HANDSHAKES = 256
_FD_RESERVE = 128  # descriptors left to the rest of the process (logs, workers, etcd...)
_RECHECK_S = 0.01  # how soon to look again at a due lease whose owner was backlogged
_MAX_ERROR_TEXT = 1000  # an error reply never quotes a whole 16 MiB key back


def default_admission() -> AdmissionLimits:
    """Caps that fit below this process's ``RLIMIT_NOFILE`` (soft limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft - _FD_RESERVE
    connections = max(16, min(MAX_CONNECTIONS, room))
    return AdmissionLimits(connections, max(4, min(MAX_HANDSHAKES, connections // 4)))


class StoreServer:
    """Hosts one store over TCP.

    Args:
        host: the address to bind; only this address is bound.
        port: the port, or 0 for any free one (read it back from ``port``).
        run_id: the job's run id; clients with another one are refused.
        secret: the shared secret clients must prove, or None for an open store.
        clock: the source of lease time (``rallypoint.clock.SystemClock`` by default).
        limits: per-connection bounds (``DEFAULT_LIMITS``).
        quota: bounds of the data held (``state.DEFAULT_QUOTA``).
        admission: caps on sockets (by default derived from ``RLIMIT_NOFILE``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        run_id: str,
        secret: bytes | None,
        clock: MonotonicClock | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        quota: Quota = DEFAULT_QUOTA,
        admission: AdmissionLimits | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._run_id = run_id
        clock = clock if clock is not None else SystemClock()
        self._service = _Service(
            run_id,
            secret,
            clock,
            StoreState(quota),
            limits,
            Admission(admission or default_admission(), RefusalLog(clock)),
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

    async def adopt(self, sock: socket.socket) -> None:
        """Serve a connection accepted elsewhere (a port shared with torch's store)."""
        await asyncio.get_running_loop().connect_accepted_socket(self._service.accept, sock)

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
        admission: Admission,
    ) -> None:
        self.state = state
        self._run_id = run_id
        self._secret = secret
        self._clock = clock
        self._limits = limits
        self._admission = admission
        self._outbox = Outbox(limits.frames_per_iteration)
        self._sessions: dict[int, StoreConnection] = {}
        self._live: set[StoreConnection] = set()
        self._backlogged: set[int] = set()
        self._next_owner = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._timer_overdue = False  # armed to fire at once, for a deadline already past

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

    def opened(self, conn: StoreConnection) -> bool:
        """Admit a new socket (or not) and track its session."""
        if not self._admission.admit(conn):
            return False
        self._live.add(conn)
        self._sessions[conn.owner] = conn
        return True

    def handshake_over(self, conn: StoreConnection) -> None:
        """The socket no longer counts against the handshake cap."""
        self._admission.handshake_over(conn)

    def refused(self, conn: StoreConnection, reason: str) -> None:
        """Log a refused or dropped peer, sparingly."""
        self._admission.refused(conn.peer, reason)

    def backlogged(self, conn: StoreConnection, waiting: bool) -> None:
        """Spare (or stop sparing) the leases of a connection with unread frames."""
        if waiting:
            self._backlogged.add(conn.owner)
        else:
            self._backlogged.discard(conn.owner)

    def ended(self, conn: StoreConnection) -> None:
        """End a session once: drop its watches and leases, push the deletions."""
        self._backlogged.discard(conn.owner)
        if self._sessions.pop(conn.owner, None) is None:
            return
        self.state.drop_owner(conn.owner)
        self._flush(self._clock.monotonic())

    def lost(self, conn: StoreConnection) -> None:
        """Forget a fully closed socket."""
        if conn in self._live:
            self._live.discard(conn)
            self._admission.closed(conn)

    def serve(self, conn: StoreConnection, request: Request) -> None:
        """Apply one request, queue its reply, then deliver the watch events it caused."""
        now = self._clock.monotonic()
        try:
            reply = handlers.handle(self.state, conn.owner, request, now, self._limits.max_frame)
        except StoreRequestError as exc:
            reply = ErrorReply(request.id, exc.code, str(exc)[:_MAX_ERROR_TEXT])
        try:
            conn.send(reply)
        except FrameTooLargeError as exc:
            conn.send(ErrorReply(request.id, ErrorCode.TOO_LARGE, str(exc)))
        self._flush(now)

    def _flush(self, now: float) -> None:
        """Queue pending watch events for their owners and re-arm the lease timer."""
        self._deliver()
        self._rearm(now)

    def _deliver(self) -> None:
        for delivery in self.state.take_deliveries():
            conn = self._sessions.get(delivery.owner)
            if conn is not None:
                conn.push(delivery.event)

    # --- lease timer -----------------------------------------------------------------------

    def _rearm(self, now: float, overdue_delay: float = 0.0) -> None:
        deadline = self.state.next_deadline()
        overdue = deadline is not None and deadline <= now
        if deadline == self._timer_deadline and (self._timer_overdue or not overdue):
            return
        self.cancel_timer()
        if deadline is not None:
            delay = overdue_delay if overdue else deadline - now
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
            self._timer_deadline = deadline
            self._timer_overdue = overdue

    def cancel_timer(self) -> None:
        """Disarm the lease timer (the server is closing)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_deadline = None
        self._timer_overdue = False

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        now = self._clock.monotonic()
        expired = self.state.expire(now, self._backlogged)
        if expired:
            logger.info("store leases expired: %d", len(expired))
        self._deliver()
        self._rearm(now, _RECHECK_S)
