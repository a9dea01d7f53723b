"""Pure parts of the console: whole lines across sources, prefixes, a bounded buffer.

No I/O here; :mod:`rallypoint.logs.writer` drives these on the event loop.

Design note: several ranks share one console. A rank's chunk may end mid-line
(a progress bar's ``\r`` update, a prompt), and that line is then "open" on the
console. If another rank writes while it is open, a newline is put first, so
the other rank's line starts on a line of its own; the open rank's next chunk
then starts a new line, with its prefix. Lines of different ranks are never
glued, and a lone rank's partial updates come out exactly as written.
"""

from __future__ import annotations

HIGH_WATER = 1 << 20  # bytes waiting for the console before reading from workers pauses
LOW_WATER = 1 << 18  # ... and below which it resumes


def with_prefix(data: bytes, prefix: bytes, first: bool = True) -> bytes:
    """Put ``prefix`` at the start of every line of ``data``.

    Lines end at ``\n`` only, as torchrun reads them; a ``\r`` (progress bars)
    stays inside its line. No prefix after a final newline (the next chunk
    starts that line), and none at the very start unless ``first`` (the chunk
    continues a line). One ``replace`` in C, not a loop over lines.
    """
    body = data[:-1].replace(b"\n", b"\n" + prefix) + data[-1:]
    return prefix + body if first else body


class LineMux:
    """Which source has an unfinished line on one console, and what keeps lines whole."""

    def __init__(self) -> None:
        self._open: object | None = None

    def frame(self, source: object, data: bytes, prefix: bytes) -> bytes:
        """The bytes to write for ``source``'s chunk ``data`` (not empty)."""
        other_open = self._open is not None and self._open is not source
        continuing = self._open is source
        self._open = None if data.endswith(b"\n") else source
        if prefix:
            data = with_prefix(data, prefix, not continuing)
        return b"\n" + data if other_open else data

    def end(self, source: object) -> bytes:
        """The bytes that close ``source``'s unfinished line, if it has one."""
        if self._open is not source:
            return b""
        self._open = None
        return b"\n"


class OutBuffer:
    """Bytes the console has not taken yet, with high and low water marks.

    ``full`` turns on when the buffer grows past ``high`` and off only once it
    is back at ``low`` or below, so reading from the workers does not flap.
    """

    def __init__(self, high: int = HIGH_WATER, low: int = LOW_WATER) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got {low} and {high}")
        self._high, self._low = high, low
        self.data = bytearray()
        self.full = False

    def __len__(self) -> int:
        return len(self.data)

    def push(self, chunk: bytes) -> bool:
        """Queue ``chunk``; True when this made the buffer full."""
        self.data += chunk
        if self.full or len(self.data) <= self._high:
            return False
        self.full = True
        return True

    def consumed(self, count: int) -> bool:
        """Drop the first ``count`` bytes (written); True when this ended ``full``."""
        del self.data[:count]
        if not self.full or len(self.data) > self._low:
            return False
        self.full = False
        return True

    def clear(self) -> bool:
        """Drop everything (the reader is gone); True when this ended ``full``."""
        return self.consumed(len(self.data))
