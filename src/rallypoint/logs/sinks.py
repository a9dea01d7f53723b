"""Where a worker's output goes: the console, files, filtered copies, a tail buffer.

Every sink takes a stream's bytes in order, in chunks that usually end at a
newline; the last chunk of a quiet stream may end mid-line (a ``\r`` progress
update, a prompt; see :mod:`rallypoint.logs.pump`). Sinks that work on lines
keep such a rest until its line ends. The console goes through a
:class:`~rallypoint.logs.writer.ConsoleWriter`, which never blocks the loop
and keeps every line whole.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Protocol

from rallypoint.logs.file_writer import LOG_FILES, LogFiles
from rallypoint.logs.writer import ConsoleWriter

LONGEST_HELD = 64 * 1024  # a line-based sink holds at most this much of an unfinished line


class LineSink(Protocol):
    """Receives a stream's bytes, in order."""

    def write(self, data: bytes) -> None:
        """Take one chunk (usually whole lines; maybe the start of a line)."""

    def close(self) -> None:
        """No more bytes will come."""


class ConsoleSink:
    """One worker stream shown on the launcher's stdout or stderr, behind an optional prefix."""

    def __init__(self, writer: ConsoleWriter, prefix: bytes = b"") -> None:
        self.writer = writer
        self._prefix = prefix

    def write(self, data: bytes) -> None:
        """Hand the chunk to the console (which never blocks)."""
        self.writer.send(self, data, self._prefix)

    def close(self) -> None:
        """End a last line that had no newline, so it does not glue to another rank's."""
        self.writer.end(self)


class FileSink:
    """Appends to a log file, flushed after every chunk, by the log files' thread."""

    def __init__(self, path: str, files: LogFiles = LOG_FILES) -> None:
        self._file = files.open(path)

    def write(self, data: bytes) -> None:
        """Queue the chunk for the file (the loop never waits for the disk)."""
        self._file.write(data)

    def close(self) -> None:
        """Close the file, after what was queued."""
        self._file.close()


class LineCutter:
    """Cuts a stream into whole lines, holding an unfinished line (up to LONGEST_HELD)."""

    def __init__(self) -> None:
        self._rest = b""

    def lines(self, data: bytes) -> bytes:
        """The whole lines that ``data`` completes; the rest is held."""
        if self._rest:
            data = self._rest + data
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        if len(self._rest) > LONGEST_HELD:
            cut, self._rest = len(data), b""
        return data[:cut]

    def held(self) -> bytes:
        """The unfinished line, still held."""
        return self._rest

    def rest(self) -> bytes:
        """The unfinished line (now given up)."""
        rest, self._rest = self._rest, b""
        return rest


class FilteredFileSink(FileSink):
    """Appends, with the console prefix, the lines that contain one of ``filters``.

    This is ``--duplicate-*-filters``; an empty filter matches every line.
    """

    def __init__(self, path: str, filters: tuple[str, ...], prefix: bytes) -> None:
        super().__init__(path)
        self._filters = tuple(f.encode() for f in filters)
        self._prefix = prefix
        self._cutter = LineCutter()

    def write(self, data: bytes) -> None:
        """Keep the matching whole lines."""
        self._keep(self._cutter.lines(data).split(b"\n")[:-1])

    def close(self) -> None:
        """A last line without newline is a line too."""
        rest = self._cutter.rest()
        if rest:
            self._keep([rest])
        super().close()

    def _keep(self, lines: list[bytes]) -> None:
        kept = [line for line in lines if any(f in line for f in self._filters)]
        if kept:
            super().write(b"".join(self._prefix + line + b"\n" for line in kept))


class TailSink:
    """Keeps the last ``size`` lines, whatever else happens to the stream."""

    def __init__(self, size: int = 30) -> None:
        self._size = size
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self._cutter = LineCutter()

    def write(self, data: bytes) -> None:
        """Remember the last whole lines (only those are decoded, however big the chunk)."""
        data = self._cutter.lines(data)
        cut = len(data) - 1  # the chunk's own final newline does not start a line
        for _ in range(self._size):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        self.lines.extend(data[cut + 1 :].decode("utf-8", "replace").splitlines())

    def close(self) -> None:
        """A last line without newline is a line too."""
        self.lines.extend(self._cutter.rest().decode("utf-8", "replace").splitlines())

    def text(self) -> str:
        """The remembered lines, joined (with an unfinished last line)."""
        held = self._cutter.held().decode("utf-8", "replace").splitlines()
        return "\n".join([*self.lines, *held][-self._size :])


@dataclass(frozen=True, slots=True)
class Stream:
    """One worker stream the agent reads.

    Attributes:
        read_fd: our end of the pipe, or the pseudo-terminal's master.
        sinks: where the bytes go.
        terminal: for a pseudo-terminal, the launcher's fd whose window size it follows.
    """

    read_fd: int
    sinks: tuple[LineSink, ...]
    terminal: int | None = None
