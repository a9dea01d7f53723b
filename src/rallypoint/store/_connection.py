"""One accepted store socket, driven as an ``asyncio.Protocol``.

Design note
-----------
A connection is a set of callbacks, not a coroutine: ``data_received`` buffers bytes in
the pure ``FrameDecoder`` and then takes complete messages one at a time, handing each to
the server synchronously, in order. Nothing awaits per message.

**Before the handshake** the decoder's frame limit is ``Limits.max_hello`` (a few hundred
bytes are enough for a hello), so a peer that has not authenticated can make the server
hold at most that many bytes, and a 16 MiB length prefix closes the socket as soon as its
four bytes arrive. The full ``max_frame`` applies once the hello is accepted.

**Bounded work per loop iteration.** All connections together handle about
``Limits.frames_per_iteration`` frames per loop iteration: a turn may take what is left of
that, and at least ``Limits.frames_per_turn``. If more are buffered, the rest is handled
by a ``call_soon`` callback in the next iteration, after the other sockets have had their
turn: a flooding client gets its share of the loop, the keep-alives of others are read in
the meantime, and a lone client pipelining thousands of requests (a coordinator writing a
round's assignments) still gets through them in a few iterations. Once more than
256 KiB wait, reading from that peer pauses until its turns catch up. While frames wait,
the connection counts as *backlogged*, and the server does not expire its leases (their
keep-alive may be among them).

**Output and back-pressure.** Every frame a connection produces during one iteration (its
replies and the watch events pushed to it) is appended to its buffer, and the shared
``Outbox`` writes each non-empty buffer with one ``transport.write`` at the end of the
iteration. Once its unread output (queued here plus buffered in the transport) passes
``Limits.pause_output``, the connection stops handling requests and stops reading, so a
client that does not read its replies makes no more of them; it resumes when the
transport has drained. Watch events are never held back, so a watcher whose unread output
passes ``Limits.max_write_buffer`` is aborted instead. Memory per connection is therefore
at most ``pause_output`` plus one reply, or ``max_write_buffer`` for watch events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from rallypoint.store._errors import StoreProtocolError
from rallypoint.store.wire import (
    CLIENT_MESSAGES,
    PREAMBLE,
    PROTOCOL_VERSION,
    REQUEST_BUDGET,
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

_MAX_BACKLOG = 256 << 10  # bytes a backlogged connection may buffer before it stops being read


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits of one server.

    Attributes:
        max_frame: the largest frame accepted or sent after the handshake, in bytes.
        max_hello: the largest frame accepted before it (the hello), in bytes.
        handshake_timeout: seconds a new connection may take to send a valid ``Hello``.
        pause_output: bytes of unread output after which requests are no longer read.
        max_write_buffer: bytes of unread output after which a client is dropped.
        frames_per_iteration: frames handled per loop iteration, all connections together.
        frames_per_turn: frames a connection may handle per iteration even when the
            iteration's share is spent.
    """

    max_frame: int
    max_hello: int
    handshake_timeout: float
    pause_output: int
    max_write_buffer: int
    frames_per_iteration: int
    frames_per_turn: int


class _Hold(enum.Enum):
    """Why reading from a peer is paused."""

    TURN = "more of its frames are buffered than its turns keep up with"
    OUTPUT = "it has not read its replies"


class ConnectionHost(Protocol):
    """What a connection needs from the server that accepted it."""

    def refusal(self, msg: Message, nonce: str) -> str | None:
        """Why the first message ``msg`` does not authenticate, or None if it does."""

    def opened(self, conn: StoreConnection) -> bool:
        """A socket was accepted; False to close it at once."""

    def handshake_over(self, conn: StoreConnection) -> None:
        """The handshake ended (accepted or refused)."""

    def refused(self, conn: StoreConnection, reason: str) -> None:
        """A peer is being closed for ``reason`` (logged sparingly)."""

    def serve(self, conn: StoreConnection, request: Request) -> None:
        """Answer one request of an authenticated connection."""

    def backlogged(self, conn: StoreConnection, waiting: bool) -> None:
        """The connection has (or no longer has) frames waiting for a later iteration."""

    def ended(self, conn: StoreConnection) -> None:
        """The session is over: forget its watches and end its leases (idempotent)."""

    def lost(self, conn: StoreConnection) -> None:
        """The socket is fully closed."""


class Outbox:
    """What connections share per loop iteration: queued frames, and frames handled.

    The queued frames of every marked connection are written at the start of the next
    iteration (one ``call_soon``), and the count of frames handled restarts then too.

    Args:
        frames_per_iteration: frames all connections may handle in one iteration.
    """

    def __init__(self, frames_per_iteration: int) -> None:
        self._dirty: list[StoreConnection] = []
        self._handle: asyncio.Handle | None = None
        self._per_iteration = frames_per_iteration
        self._handled = 0

    def share(self, least: int) -> int:
        """How many frames the next turn may handle: what is left, and at least ``least``."""
        return max(least, self._per_iteration - self._handled)

    def handled(self, frames: int) -> None:
        """Count frames handled in this iteration (every frame's reply marks a connection)."""
        self._handled += frames

    def mark(self, conn: StoreConnection) -> None:
        """Schedule ``conn``'s buffer to be written; call when it stops being empty."""
        self._dirty.append(conn)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every marked connection's buffer now."""
        self._handle = None
        self._handled = 0
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
        self._decoder = FrameDecoder(limits.max_hello, CLIENT_MESSAGES, REQUEST_BUDGET)
        self._nonce: str | None = None  # set until the handshake succeeds
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._holds: set[_Hold] = set()
        self._backlogged = False
        self._next_turn: asyncio.Handle | None = None
        self._head: bytes | None = b""  # until the preamble is seen or ruled out

    # --- asyncio.Protocol callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # always a TCP stream transport
        loop = asyncio.get_running_loop()
        self._transport = transport
        self.closed = loop.create_future()
        self.peer = str(transport.get_extra_info("peername"))
        if not self._host.opened(self):
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self._limits.pause_output)
        self._nonce = secrets.token_hex(16)
        self._timer = loop.call_later(self._limits.handshake_timeout, self._on_timeout)
        self.send(Challenge(self._nonce, PROTOCOL_VERSION))

    def data_received(self, data: bytes) -> None:
        if self._head is not None:  # the first bytes: a client's PREAMBLE, or not
            data = self._skip_preamble(data)
            if not data:
                return
        self._decoder.receive(data)
        if self._next_turn is None:
            self._take_turn()
        elif self._decoder.buffered > _MAX_BACKLOG:  # it sends faster than its turns come
            self._hold(_Hold.TURN)

    def _skip_preamble(self, data: bytes) -> bytes:
        """Drop the client's PREAMBLE from the stream's start; keep all else for the decoder."""
        head = (self._head or b"") + data
        if len(head) < len(PREAMBLE) and PREAMBLE.startswith(head):
            self._head = head  # wait for the rest of it
            return b""
        self._head = None
        return head.removeprefix(PREAMBLE)

    def eof_received(self) -> bool:
        if self._nonce is not None:
            self._host.refused(self, "closed during the handshake")
        self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._next_turn is not None:
            self._next_turn.cancel()
        self._out.clear()
        if exc is not None:
            logger.info("store connection %s failed: %s", self.peer, exc)
        self._host.ended(self)
        self._host.lost(self)
        self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._hold(_Hold.OUTPUT)

    def resume_writing(self) -> None:
        self._schedule_turn()

    # --- input ---------------------------------------------------------------------------

    def _take_turn(self) -> None:
        """Handle this turn's share of frames; leave the rest for the next iteration."""
        self._next_turn = None
        # nothing is written during a turn (the Outbox writes later): read the transport once
        room = self._limits.pause_output - self._transport.get_write_buffer_size()
        if self._out_size <= room:
            self._release(_Hold.OUTPUT)
        share = self._outbox.share(self._limits.frames_per_turn)
        try:
            for handled in range(share):
                if self._out_size > room:
                    self._outbox.handled(handled)
                    self._hold(_Hold.OUTPUT)
                    self._set_backlogged(False)  # its own replies hold it up, not the loop
                    return
                if self._transport.is_closing():
                    return
                msg = self._decoder.next_message()
                if msg is None:
                    self._outbox.handled(handled)
                    self._release(_Hold.TURN)
                    self._set_backlogged(False)
                    return
                self._receive(msg)
        except StoreProtocolError as exc:
            self._drop(exc)
            return
        self._outbox.handled(share)
        self._set_backlogged(True)
        if self._decoder.buffered > _MAX_BACKLOG:
            self._hold(_Hold.TURN)
        self._schedule_turn()

    def _schedule_turn(self) -> None:
        if self._next_turn is None and not self._transport.is_closing():
            self._next_turn = asyncio.get_running_loop().call_soon(self._take_turn)

    def _set_backlogged(self, waiting: bool) -> None:
        if waiting != self._backlogged:
            self._backlogged = waiting
            self._host.backlogged(self, waiting)

    def _hold(self, why: _Hold) -> None:
        if not self._holds:
            self._transport.pause_reading()
        self._holds.add(why)

    def _release(self, why: _Hold) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if not self._holds and not self._transport.is_closing():
            self._transport.resume_reading()

    def _receive(self, msg: Message) -> None:
        if self._nonce is not None:
            self._handshake(msg, self._nonce)
        elif isinstance(msg, Request):
            self._host.serve(self, msg)
        else:
            raise StoreProtocolError(f"unexpected {type(msg).__name__} after handshake")

    def _handshake(self, msg: Message, nonce: str) -> None:
        self._cancel_timer()
        self._host.handshake_over(self)
        reason = self._host.refusal(msg, nonce)
        if reason is not None:
            self._host.refused(self, reason)
            self.send(Refused(reason))
            self.close()
            return
        self._nonce = None
        self._decoder.set_max_frame(self._limits.max_frame)
        self.send(Welcome())

    def _drop(self, exc: StoreProtocolError) -> None:
        if self._nonce is not None:
            self._host.refused(self, f"protocol error: {exc}")
        else:
            logger.warning("store dropping %s: %s", self.peer, exc)
        with contextlib.suppress(StoreProtocolError):
            self.send(Refused(f"protocol error: {exc}"))
        self.close()

    def _on_timeout(self) -> None:
        self._timer = None
        self._host.refused(self, f"no Hello within {self._limits.handshake_timeout}s")
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

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
        if self._unread() > self._limits.max_write_buffer:
            logger.warning("store dropping %s: it does not read its watch events", self.peer)
            self.abort()

    def flush(self) -> None:
        """Write the queued frames with one ``transport.write``."""
        if self._out and not self._transport.is_closing():
            self._transport.write(b"".join(self._out))
        self._out.clear()
        self._out_size = 0
        if _Hold.OUTPUT in self._holds and not self._output_full():
            self._schedule_turn()

    def close(self) -> None:
        """Write what is queued, close the socket and end the session now."""
        self._cancel_timer()
        self._decoder.discard()
        self.flush()
        self._transport.close()
        self._host.ended(self)

    def abort(self) -> None:
        """Close the socket at once, discarding unsent output."""
        self._decoder.discard()
        self._out.clear()
        self._out_size = 0
        self._transport.abort()

    def _unread(self) -> int:
        return self._out_size + self._transport.get_write_buffer_size()

    def _output_full(self) -> bool:
        return self._unread() > self._limits.pause_output
