"""Read a worker's pipe on the event loop and hand whole lines to sinks.

Design note: torchrun's tee writes to a file and tails it from a thread every
0.1 s, so the console lags and lines of different ranks can interleave. Here
the agent's one event loop reads each worker's pipe as data arrives, cuts the
data after its last newline and gives every sink whole lines in one call; the
rest waits for the next read. At end of file a last line without a newline is
delivered too. Sinks write each batch with one ``write``, so lines are never
cut or mixed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from rallypoint.logs.sinks import LineSink


class PipePump(asyncio.Protocol):
    """asyncio protocol that splits a pipe's bytes into whole-line batches."""

    def __init__(self, sinks: Sequence[LineSink]) -> None:
        self._sinks = sinks
        self._pending = b""
        self._transport: asyncio.BaseTransport | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport, to close it if the pipe never reaches its end."""
        self._transport = transport

    def abandon(self) -> None:
        """Stop reading now (whoever holds the write end keeps it); sinks get what came."""
        if self._transport is not None and not self.finished.done():
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        """Deliver everything up to the last newline; keep the rest."""
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        if cut:
            self._deliver(data[:cut])

    def _deliver(self, batch: bytes) -> None:
        for sink in self._sinks:
            sink.write_lines(batch)

    def eof_received(self) -> bool | None:
        """Deliver a last line that had no newline."""
        if self._pending:
            self._deliver(self._pending)
            self._pending = b""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Close the sinks and mark the stream finished."""
        self.eof_received()
        for sink in self._sinks:
            sink.close()
        if not self.finished.done():
            self.finished.set_result(None)


async def pump_pipe(read_fd: int, sinks: Sequence[LineSink]) -> PipePump:
    """Start pumping ``read_fd`` (which the pump now owns) into ``sinks``."""
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    _, protocol = await loop.connect_read_pipe(lambda: PipePump(sinks), pipe)
    return protocol
