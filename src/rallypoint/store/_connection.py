"""One accepted store socket, driven as an ``asyncio.Protocol``.

Design note
-----------
A connection is a set of callbacks, not a coroutine: ``data_received`` feeds the pure
``FrameDecoder`` and hands every complete message to the server synchronously, in order.
Nothing awaits per message, so a request costs one decode, one state call and one encode,
with no futures, no task switches and no stream buffers in between.

Output is not written frame by frame. Every frame a connection produces during one loop
iteration (its replies and the watch events pushed to it) is appended to its buffer, and
the shared ``Outbox`` writes each non-empty buffer with one ``transport.write`` from a
single ``call_soon`` callback: one ``send`` per connection per loop iteration instead of
one per frame. Frames keep their order because only that buffer is ever written, and a
connection the server closes writes its buffer first, so a ``Refused`` still arrives.

Flow control replaces the old ``drain()`` after every reply: when the transport's buffer
passes its high-water mark, ``pause_writing`` stops reading from that peer until the
buffer drains, so a client that does not read its replies stops being read from. Watch
events are never held back; a peer whose unread output (queued here plus buffered in the
transport) grows past ``max_write_buffer`` is aborted instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from rallypoint.store._errors import StoreProtocolError
from rallypoint.store.wire import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    Challenge,
    FrameDecoder,
    Message,
    Refused,
    Request,
    Welcome,
    encode,
)

__all__ = ["ConnectionHost", "Limits", "Outbox", "StoreConnection"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits of one server.

    Attributes:
        max_frame: the largest frame accepted or sent, in bytes.
        handshake_timeout: seconds a new connection may take to send a valid ``Hello``.
        max_write_buffer: bytes of unread output after which a client is dropped.
    """

    max_frame: int
    handshake_timeout: float
    max_write_buffer: int


class ConnectionHost(Protocol):
    """What a connection needs from the server that accepted it."""

    def refusal(self, msg: Message, nonce: str) -> str | None:
        """Why the first message ``msg`` does not authenticate, or None if it does."""

    def opened(self, conn: StoreConnection) -> None:
        """A socket was accepted; its session starts."""

    def serve(self, conn: StoreConnection, request: Request) -> None:
        """Answer one request of an authenticated connection."""

    def ended(self, conn: StoreConnection) -> None:
        """The session is over: forget its watches and end its leases (idempotent)."""

    def lost(self, conn: StoreConnection) -> None:
        """The socket is fully closed."""


class Outbox:
    """Connections with queued frames, written once at the end of this loop iteration."""

    def __init__(self) -> None:
        self._dirty: list[StoreConnection] = []
        self._handle: asyncio.Handle | None = None

    def mark(self, conn: StoreConnection) -> None:
        """Schedule ``conn``'s buffer to be written; call when it stops being empty."""
        self._dirty.append(conn)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every marked connection's buffer now."""
        self._handle = None
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class StoreConnection(asyncio.Protocol):
    """One client socket: challenge, handshake, then requests answered in order.

    Args:
        host: the server's session logic.
        owner: the session id, which owns the leases and watches this client creates.
        outbox: the server's shared write scheduler.
        limits: the server's limits.
    """

    _transport: asyncio.Transport
    closed: asyncio.Future[None]

    def __init__(self, host: ConnectionHost, owner: int, outbox: Outbox, limits: Limits) -> None:
        self.owner = owner
        self.peer = "?"
        self._host = host
        self._outbox = outbox
        self._limits = limits
        self._decoder = FrameDecoder(limits.max_frame, CLIENT_MESSAGES)
        self._nonce: str | None = None  # set until the handshake succeeds
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_size = 0

    # --- asyncio.Protocol callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # always a TCP stream transport
        loop = asyncio.get_running_loop()
        self._transport = transport
        self.closed = loop.create_future()
        self.peer = str(transport.get_extra_info("peername"))
        self._nonce = secrets.token_hex(16)
        timeout = self._limits.handshake_timeout
        self._timer = loop.call_later(timeout, self._on_handshake_timeout)
        self._host.opened(self)
        self.send(Challenge(self._nonce, PROTOCOL_VERSION))

    def data_received(self, data: bytes) -> None:
        try:
            for msg in self._decoder.feed(data):
                if self._transport.is_closing():
                    return
                self._receive(msg)
        except StoreProtocolError as exc:
            self._drop(exc)

    def eof_received(self) -> bool:
        if self._nonce is not None:
            logger.info("store connection %s closed during the handshake", self.peer)
        self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._out.clear()
        if exc is not None:
            logger.info("store connection %s failed: %s", self.peer, exc)
        self._host.ended(self)
        self._host.lost(self)
        self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._transport.resume_reading()

    # --- output --------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        """Queue one message for this iteration's write; raises FrameTooLargeError."""
        frame = encode(msg, self._limits.max_frame)
        if not self._out:
            self._outbox.mark(self)
        self._out.append(frame)
        self._out_size += len(frame)

    def push(self, event: Message) -> None:
        """Queue a watch event, dropping this client if its unread output is too large."""
        if self._transport.is_closing():
            return
        self.send(event)
        unread = self._out_size + self._transport.get_write_buffer_size()
        if unread > self._limits.max_write_buffer:
            logger.warning("store dropping %s: it does not read its watch events", self.peer)
            self.abort()

    def flush(self) -> None:
        """Write the queued frames with one ``transport.write``."""
        if self._out and not self._transport.is_closing():
            self._transport.write(b"".join(self._out))
        self._out.clear()
        self._out_size = 0

    def close(self) -> None:
        """Write what is queued, close the socket and end the session now."""
        self._cancel_timer()
        self.flush()
        self._transport.close()
        self._host.ended(self)

    def abort(self) -> None:
        """Close the socket at once, discarding unsent output."""
        self._out.clear()
        self._out_size = 0
        self._transport.abort()

    # --- input ---------------------------------------------------------------------------

    def _receive(self, msg: Message) -> None:
        if self._nonce is not None:
            self._handshake(msg, self._nonce)
        elif isinstance(msg, Request):
            self._host.serve(self, msg)
        else:
            raise StoreProtocolError(f"unexpected {type(msg).__name__} after handshake")

    def _handshake(self, msg: Message, nonce: str) -> None:
        self._cancel_timer()
        reason = self._host.refusal(msg, nonce)
        if reason is not None:
            logger.warning("store refused %s: %s", self.peer, reason)
            self.send(Refused(reason))
            self.close()
            return
        self._nonce = None
        self.send(Welcome())

    def _drop(self, exc: StoreProtocolError) -> None:
        logger.warning("store dropping %s: %s", self.peer, exc)
        with contextlib.suppress(StoreProtocolError):
            self.send(Refused(f"protocol error: {exc}"))
        self.close()

    def _on_handshake_timeout(self) -> None:
        self._timer = None
        timeout = self._limits.handshake_timeout
        logger.warning("store dropping %s: no Hello within %ss", self.peer, timeout)
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
