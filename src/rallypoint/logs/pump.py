"""Read a worker's pipe (or pseudo-terminal) on the event loop and hand its bytes to sinks.

Design note: torchrun's tee writes to a file and tails it from a thread every
0.1 s, so the console lags and lines of different ranks can interleave. Here
the agent's one event loop reads each worker's stream as data arrives and
gives every sink the data up to its last newline at once. What follows the
last newline (a ``\r`` progress update, a prompt, or just the first half of a
line the worker is still writing) is held until more comes, but only while the
stream is busy: once it has been quiet for PARTIAL_HOLD it goes out as it is.
So progress bars are live, and a line written in two ``write`` calls (as
``print`` does under ``python -u``) still reaches the console whole.

The pump is also a valve: a console that cannot keep up pauses it, and the
kernel then holds the worker's further output (see :mod:`rallypoint.logs.writer`).
"""

from __future__ import annotations

import asyncio
import os

from rallypoint.logs.sinks import ConsoleSink, Stream
from rallypoint.logs.terminal import copy_size

PARTIAL_HOLD = 0.025  # seconds of quiet before an unfinished line is shown as it is


class PipePump(asyncio.Protocol):
    """asyncio protocol that hands a stream's bytes to sinks, whole lines when it can."""

    def __init__(self, stream: Stream, hold: float = PARTIAL_HOLD) -> None:
        self._sinks = stream.sinks
        self._terminal = stream.terminal
        self._hold = hold
        self._pending = b""
        self._reads = 0
        self._timer: asyncio.TimerHandle | None = None
        self._pauses = 0
        self._transport: asyncio.ReadTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._writers = {s.writer for s in stream.sinks if isinstance(s, ConsoleSink)}
        self.finished: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; from now on, consoles that fill up pause us."""
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport
        for writer in self._writers:
            writer.subscribe(self)

    @property
    def paused(self) -> bool:
        """True while a full console keeps us from reading."""
        return self._pauses > 0

    def pause(self) -> None:
        """A console is full: read no more until every full console has drained."""
        self._pauses += 1
        if self._pauses == 1 and self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        """A console has drained."""
        self._pauses -= 1
        if self._pauses == 0 and self._transport is not None:
            self._transport.resume_reading()

    def abandon(self) -> None:
        """Stop reading now (whoever holds the write end keeps it); sinks get what came."""
        if self._transport is not None and not self.finished.done():
            self._transport.close()

    @property
    def follows_terminal(self) -> bool:
        """True for a pseudo-terminal that takes the launcher's terminal's size."""
        return self._terminal is not None

    def follow_size(self) -> None:
        """Give a pseudo-terminal the launcher's terminal's current window size."""
        transport = self._transport
        if self._terminal is not None and transport is not None and not transport.is_closing():
            copy_size(self._terminal, transport.get_extra_info("pipe").fileno())

    def data_received(self, data: bytes) -> None:
        """Deliver everything up to the last newline; hold the rest for a moment."""
        self._reads += 1
        if self._pending:
            data = self._pending + data
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            self._pending = b""
            self._deliver(data)
            return
        if cut:
            self._deliver(data[:cut])
        self._pending = data[cut:]
        if self._timer is None:
            self._timer = self._loop.call_later(self._hold, self._quiet, self._reads)

    def _quiet(self, reads_when_armed: int) -> None:
        """Show a held unfinished line once the stream has been quiet for a while."""
        self._timer = None
        if not self._pending:
            return
        if self._reads != reads_when_armed:  # still busy: look again later
            self._timer = self._loop.call_later(self._hold, self._quiet, self._reads)
            return
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, b""
            self._deliver(pending)

    def _deliver(self, data: bytes) -> None:
        for sink in self._sinks:
            sink.write(data)

    def eof_received(self) -> bool | None:
        """Deliver a last line that had no newline."""
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Deliver what is held, close the sinks and mark the stream finished.

        A pseudo-terminal ends with EIO once the worker's side is closed; that is its EOF.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()
        for writer in self._writers:
            writer.unsubscribe(self)
        for sink in self._sinks:
            sink.close()
        if not self.finished.done():
            self.finished.set_result(None)


async def pump_stream(stream: Stream) -> PipePump:
    """Start pumping ``stream`` (whose read end the pump now owns)."""
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(stream.read_fd, "rb", buffering=0)
    _, protocol = await loop.connect_read_pipe(lambda: PipePump(stream), pipe)
    return protocol
