"""The launcher's stdout and stderr, written without ever blocking the event loop.

Design note: a slow reader of the launcher's output (a paused terminal, a pipe
nobody reads) must not stop the loop, which also keeps the node's lease alive.
Each console is reopened through ``/proc/self/fd`` as a file description of
our own, non-blocking (setting ``O_NONBLOCK`` on fd 1 itself would reach every
process sharing it: the shell, and workers whose stdout is inherited). What the
console does not take at once waits in a bounded :class:`OutBuffer`; past its
high mark every pump feeding this console stops reading, so the workers' pipes
fill and the workers wait in ``write``, as they would on an inherited fd
under torchrun. Nothing is dropped unless the reader is gone. Regular files
(``> out.log``) and sockets cannot be reopened so; they are written directly.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import select
import stat
import sys
from typing import TYPE_CHECKING, Protocol

from rallypoint.logs.framing import LineMux, OutBuffer

if TYPE_CHECKING:  # asyncio is imported only once the loop runs: the first spawn comes before
    import asyncio

logger = logging.getLogger(__name__)

# The writer that owns each launcher fd's console now (an attempt's), for the agent's own log lines.
_LIVE: dict[int, ConsoleWriter] = {}

GONE = (errno.EPIPE, errno.EIO, errno.ENXIO, errno.EBADF)  # no reader, no terminal, no fd


class Valve(Protocol):
    """Something that feeds a console and can stop doing so for a while."""

    def pause(self) -> None:
        """Stop reading until ``resume``."""

    def resume(self) -> None:
        """Read again."""


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, waiting (never spinning) when it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError as exc:
            if exc.errno not in GONE:
                raise
            return


def reopen_nonblocking(fd: int) -> int | None:
    """A non-blocking file description of our own for ``fd``'s pipe or device, if it has one."""
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            return None
        flags = os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
        return os.open(f"/proc/self/fd/{fd}", flags)
    except OSError:
        return None


class ConsoleWriter:
    """One console (the launcher's stdout or stderr, or both when they are the same file)."""

    def __init__(self, fd: int, buffer: OutBuffer | None = None) -> None:
        own = reopen_nonblocking(fd)
        self.fd = fd if own is None else own
        self.nonblocking = own is not None
        self._buffer = buffer if buffer is not None else OutBuffer()
        self._mux = LineMux()
        self._valves: set[Valve] = set()
        self._paused: set[Valve] = set()
        self._watching: asyncio.AbstractEventLoop | None = None
        self._drained: list[asyncio.Future[None]] = []
        self._gone = False  # the reader went away: drop everything from now on

    # --- flow control ---------------------------------------------------------------

    def subscribe(self, valve: Valve) -> None:
        """``valve`` feeds this console: pause it whenever the console is full."""
        self._valves.add(valve)
        if self._buffer.full:
            self._pause(valve)

    def unsubscribe(self, valve: Valve) -> None:
        """``valve`` feeds no more."""
        self._valves.discard(valve)
        self._paused.discard(valve)

    def _pause(self, valve: Valve) -> None:
        self._paused.add(valve)
        valve.pause()

    def _resume_all(self) -> None:
        paused, self._paused = self._paused, set()
        for valve in paused:
            valve.resume()

    # --- writing --------------------------------------------------------------------

    def send(self, source: object, data: bytes, prefix: bytes = b"") -> None:
        """Write ``source``'s chunk, whole lines kept whole against other sources."""
        self._emit(self._mux.frame(source, data, prefix))

    def end(self, source: object) -> None:
        """``source`` is done: end its unfinished line."""
        tail = self._mux.end(source)
        if tail:
            self._emit(tail)

    def _emit(self, data: bytes) -> None:
        if self._gone:
            return
        if not self.nonblocking:
            write_all(self.fd, data)
            return
        if not self._buffer:
            written = self._write(data)
            if written == len(data):
                return
            data = data[written:]
        if self._buffer.push(data):
            logger.debug("console fd %d is full; pausing %d pumps", self.fd, len(self._valves))
            for valve in self._valves - self._paused:
                self._pause(valve)
        self._watch()

    def _write(self, data: bytes | bytearray) -> int:
        """Write what the console takes now; a gone reader takes (and loses) everything."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno not in GONE:
                raise
            self._gone = True  # before logging: the log line may come back here
            logger.debug("console fd %d is gone (%s); dropping its output", self.fd, exc)
            return len(data)

    def _watch(self) -> None:
        if self._watching is None:
            import asyncio  # loaded by now: only the loop writes

            self._watching = asyncio.get_running_loop()
            self._watching.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        if self._buffer.consumed(self._write(self._buffer.data)):
            self._resume_all()
        if not self._buffer:
            self._unwatch()
            for waiter in self._drained:
                if not waiter.done():
                    waiter.set_result(None)
            self._drained.clear()

    def _unwatch(self) -> None:
        if self._watching is not None:
            if not self._watching.is_closed():
                self._watching.remove_writer(self.fd)
            self._watching = None

    @property
    def pending(self) -> int:
        """Bytes written to us that the console has not taken yet."""
        return len(self._buffer)

    async def drained(self) -> None:
        """Return once the console has taken everything (however long its reader takes)."""
        if self._buffer:
            import asyncio  # loaded by now

            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter

    def close(self) -> None:
        """Write what is left (blocking now, if it must) and let go of our description."""
        self._unwatch()
        if self._buffer:
            write_all(self.fd, bytes(self._buffer.data))
            self._buffer.clear()
        self._resume_all()
        if self.nonblocking:
            os.close(self.fd)
            self.nonblocking = False


class Consoles:
    """The writers of one attempt, one per console file (stdout and stderr may be one)."""

    def __init__(self) -> None:
        self._writers: dict[tuple[int, int], ConsoleWriter] = {}

    def writer(self, fd: int) -> ConsoleWriter:
        """The writer for launcher fd ``fd`` (1 or 2); one for both when they are one file."""
        try:
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
        except OSError:
            key = (-1, fd)
        if key not in self._writers:
            self._writers[key] = ConsoleWriter(fd)
        _LIVE[fd] = self._writers[key]
        return self._writers[key]

    @property
    def any_pending(self) -> bool:
        """True while some console has not taken everything."""
        return any(w.pending for w in self._writers.values())

    async def drained(self) -> None:
        """Return once every console has taken everything."""
        for writer in list(self._writers.values()):
            await writer.drained()

    def close(self) -> None:
        """Close every writer (see :meth:`ConsoleWriter.close`)."""
        for writer in self._writers.values():
            writer.close()
        for fd, writer in list(_LIVE.items()):
            if writer in self._writers.values():
                del _LIVE[fd]
        self._writers.clear()


def _flush_live() -> None:
    """At exit: write what a console of an attempt that never ended still holds."""
    for writer in set(_LIVE.values()):
        writer.close()
    _LIVE.clear()


atexit.register(_flush_live)


def _on_a_loop() -> bool:
    asyncio = sys.modules.get("asyncio")  # not imported yet: no loop runs
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LogStream:
    """The text stream of the launcher's own log lines on ``fd`` (2: stderr).

    While an attempt's workers are shown on that console and we are on the
    event loop, a log line goes through their writer: it does not block the
    loop, and it does not cut a worker's unfinished line. Otherwise it goes
    to ``sys.stderr`` (or ``sys.stdout``) as usual.
    """

    def __init__(self, fd: int = 2) -> None:
        self._fd = fd

    def write(self, text: str) -> int:
        """Write one log record (a whole line)."""
        writer = _LIVE.get(self._fd)
        if writer is not None and _on_a_loop():
            writer.send(self, text.encode("utf-8", "replace"))
        else:
            (sys.stderr if self._fd == 2 else sys.stdout).write(text)
        return len(text)

    def flush(self) -> None:
        """Flush the fallback stream (the writer never holds back what it can write)."""
        (sys.stderr if self._fd == 2 else sys.stdout).flush()
