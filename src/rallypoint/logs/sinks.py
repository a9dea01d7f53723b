"""Where a worker's lines go: the console, files, filtered copies, a tail buffer.

Every sink takes whole lines in batches (see :mod:`rallypoint.logs.pump`) and
writes each batch with one call, so lines are never cut or mixed. Nothing here
needs the event loop.
"""

from __future__ import annotations

import collections
import os
from typing import Protocol


class LineSink(Protocol):
    """Receives batches of whole lines (bytes ending in newline, but maybe the last)."""

    def write_lines(self, data: bytes) -> None:
        """Take one batch."""

    def close(self) -> None:
        """No more lines will come."""


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            return


def with_prefix(data: bytes, prefix: bytes) -> bytes:
    """Put ``prefix`` before every line of ``data`` (which ends with a newline).

    Lines end at ``\n`` only, as torchrun reads them; a ``\r`` (progress bars)
    stays inside its line. One ``replace`` in C, not a loop over lines.
    """
    return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"


class ConsoleSink:
    """Writes lines to the launcher's stdout or stderr, each behind an optional prefix."""

    def __init__(self, fd: int, prefix: bytes = b"") -> None:
        self._fd = fd
        self._prefix = prefix

    def write_lines(self, data: bytes) -> None:
        """Write the batch (prefixed line by line) in one go."""
        if not data.endswith(b"\n"):
            data += b"\n"  # a last line without newline must not glue to another rank's
        write_all(self._fd, with_prefix(data, self._prefix) if self._prefix else data)

    def close(self) -> None:
        """Nothing to release: the fd belongs to the launcher."""


class FileSink:
    """Appends lines to a log file, flushed after every batch."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()

    def write_lines(self, data: bytes) -> None:
        """Append and flush."""
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class FilteredFileSink(FileSink):
    """Appends, with the console prefix, the lines that contain one of ``filters``.

    This is ``--duplicate-*-filters``; an empty filter matches every line.
    """

    def __init__(self, path: str, filters: tuple[str, ...], prefix: bytes) -> None:
        super().__init__(path)
        self._filters = tuple(f.encode() for f in filters)
        self._prefix = prefix

    def write_lines(self, data: bytes) -> None:
        """Keep the matching lines of the batch."""
        lines = data.split(b"\n")
        ended = lines.pop() == b""  # a batch ends with a newline, except a last partial line
        if not ended:
            lines.append(data.rpartition(b"\n")[2])
        kept = [line for line in lines if any(f in line for f in self._filters)]
        if kept:
            super().write_lines(b"".join(self._prefix + line + b"\n" for line in kept))


class TailSink:
    """Keeps the last ``size`` lines, whatever else happens to the stream."""

    def __init__(self, size: int = 30) -> None:
        self._size = size
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def write_lines(self, data: bytes) -> None:
        """Remember the batch's last lines (only those are decoded, however big the batch)."""
        cut = len(data) - 1  # the batch's own final newline does not start a line
        for _ in range(self._size):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        self.lines.extend(data[cut + 1 :].decode("utf-8", "replace").splitlines())

    def close(self) -> None:
        """Nothing to release."""

    def text(self) -> str:
        """The remembered lines, joined."""
        return "\n".join(self.lines)
