"""The asyncio driver of the torch store: connections in, the pure state in between.

Design note
-----------
Each accepted socket is a ``TorchConnection`` (an ``asyncio.Protocol``). ``data_received``
feeds the pure ``RequestDecoder`` and applies every complete request to the state at once,
in order, with no task, future or lock in between: the state is touched only from this
loop. Replies, and the wait replies a write causes on other connections, are queued on
their connections and written once per ``data_received`` (one ``send`` per connection per
batch of requests, however many replies it got).

Hardening, as the rendezvous store: a request is bounded (``wire.Limits``) and checked as
its lengths arrive; the first request must be ``VALIDATE`` with torch's magic number
(torch's server ignores a connection that skips it; we close it), and a connection that
sends nothing valid within ``handshake_timeout`` is closed; a protocol error closes only
the connection that made it. When a client stops reading, ``pause_writing`` stops reading
from it (its replies cannot pile up), and one whose unread output still passes
``max_write_buffer`` (wait replies pushed to it) is dropped.

*Generations.* ``reset`` starts a fresh state for connections accepted from then on;
connections already open keep the state they started with, so a worker of the previous
attempt still alive can neither read a key of the next one nor leave one behind for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from rallypoint.torchstore.listener import BACKLOG
from rallypoint.torchstore.state import TorchStoreState
from rallypoint.torchstore.wire import (
    DEFAULT_LIMITS,
    Limits,
    Request,
    RequestDecoder,
    TorchProtocolError,
    Validate,
    encode_reply,
)

__all__ = ["ServerLimits", "TorchConnection", "TorchStoreServer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The bounds of one server.

    Attributes:
        request: the bounds of one request.
        handshake_timeout: seconds a new connection may take to validate.
        max_write_buffer: bytes of unread output after which a client is dropped.
        backlog: connections the kernel queues before they are accepted; every worker of a
            node may connect at the same instant, and a full queue resets them.
    """

    request: Limits = DEFAULT_LIMITS
    handshake_timeout: float = 60.0
    max_write_buffer: int = 64 << 20
    backlog: int = BACKLOG


class TorchStoreServer:
    """Serves torch's store on an already listening socket.

    Args:
        sock: a bound, listening TCP socket, which the server owns from now on; or None
            for a server that only takes the connections handed to ``adopt``.
        limits: the server's bounds.
    """

    def __init__(self, sock: socket.socket | None, limits: ServerLimits | None = None) -> None:
        self._sock = sock
        self.limits = limits or ServerLimits()
        self.state = TorchStoreState()
        self.generation = 0
        self._connections: dict[int, TorchConnection] = {}
        self._next_owner = 1
        self._dirty: list[TorchConnection] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Start accepting connections (queued ones included)."""
        if self._sock is not None:
            loop = asyncio.get_running_loop()
            # asyncio listens again, with its own backlog of 100 unless told otherwise
            backlog = self.limits.backlog
            self._server = await loop.create_server(self._accept, sock=self._sock, backlog=backlog)

    async def adopt(self, sock: socket.socket) -> None:
        """Serve a connection accepted elsewhere (see ``rendezvous/shared_port.py``)."""
        await asyncio.get_running_loop().connect_accepted_socket(self._accept, sock)

    def reset(self) -> None:
        """Give connections accepted from now on a fresh, empty store."""
        self.state = TorchStoreState()
        self.generation += 1
        logger.info("torch store: generation %d starts empty", self.generation)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            conn.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> int:
        """How many clients are connected."""
        return len(self._connections)

    # --- what connections call --------------------------------------------------------------

    def _accept(self) -> TorchConnection:
        owner = self._next_owner
        self._next_owner += 1
        return TorchConnection(self, owner, self.state)

    def opened(self, conn: TorchConnection) -> None:
        """Track a new connection."""
        self._connections[conn.owner] = conn

    def lost(self, conn: TorchConnection) -> None:
        """Forget a closed connection and its waits."""
        self._connections.pop(conn.owner, None)
        conn.state.drop_owner(conn.owner)

    def queue(self, conn: TorchConnection, data: bytes) -> None:
        """Queue ``data`` on ``conn`` for the next ``flush``."""
        if not conn.out:
            self._dirty.append(conn)
        conn.out.append(data)

    def wake(self, state: TorchStoreState) -> None:
        """Queue the wait replies the last request caused."""
        for wakeup in state.take_wakeups():
            conn = self._connections.get(wakeup.owner)
            if conn is not None:
                self.queue(conn, encode_reply(wakeup.reply))

    def flush(self) -> None:
        """Write every queued output, one write per connection."""
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.write_out()


class TorchConnection(asyncio.Protocol):
    """One client: validation, then requests answered in order.

    Args:
        server: the server that accepted it.
        owner: the connection's id in the state (its waits belong to it).
        state: the store generation this connection uses for its whole life.
    """

    transport: asyncio.Transport

    def __init__(self, server: TorchStoreServer, owner: int, state: TorchStoreState) -> None:
        self.owner, self.state, self.out = owner, state, list[bytes]()
        self.peer = "?"
        self._server = server
        self._decoder = RequestDecoder(server.limits.request)
        self._validated = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # always a TCP stream transport
        self.transport = transport
        self.peer = str(transport.get_extra_info("peername"))
        timeout = self._server.limits.handshake_timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._on_timeout)
        self._server.opened(self)

    def data_received(self, data: bytes) -> None:
        try:
            for request in self._decoder.feed(data):
                self._serve(request)
        except TorchProtocolError as exc:
            logger.warning("torch store: dropping %s: %s", self.peer, exc)
            self._server.flush()
            self.transport.close()
            return
        self._server.flush()

    def _serve(self, request: Request) -> None:
        if self._validated is (type(request) is Validate):
            what = "validated twice" if self._validated else "did not validate first"
            raise TorchProtocolError(f"the client {what}")
        reply = self.state.apply(self.owner, request)
        if not self._validated:
            self._validated = True
            self._cancel_timer()
        if reply is not None:
            self._server.queue(self, encode_reply(reply))
        self._server.wake(self.state)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.out.clear()
        self._server.lost(self)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def write_out(self) -> None:
        """Write the queued output with one ``transport.write``; drop a client that lags."""
        if self.transport.is_closing():
            self.out.clear()
            return
        self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
        self.out.clear()
        if self.transport.get_write_buffer_size() > self._server.limits.max_write_buffer:
            logger.warning("torch store: dropping %s: it does not read its replies", self.peer)
            self.transport.abort()

    def _on_timeout(self) -> None:
        self._timer = None
        logger.warning("torch store: dropping %s: it did not validate in time", self.peer)
        self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
