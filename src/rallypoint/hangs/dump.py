"""faulthandler's dump format, parsed incrementally into frozen stack records.

Design note: the worker bootstrap (:mod:`rallypoint.workers.bootstrap`) writes
one line naming its main thread, then, on the same pipe, its sampler writes a
dump of every thread each sample period (``Sample (<time>)!``, in
faulthandler's own format; faulthandler's ``Timeout (0:00:05)!`` dumps are read
the same way) and faulthandler one on a fatal signal (``Fatal Python error:
Segmentation fault`` and every thread, the crashing one as ``Current
thread``). Nothing marks a dump's end, so a dump ends at the next dump's first
line, at the end of the stream, or at the main thread's last frame, which is
the bootstrap's own top level: the main thread comes last (the sampler writes
it last; CPython lists threads newest first), so a dump is known whole at
once, not a period later. The bootstrap's own frames are dropped from every
stack. A line the parser does not know (a dump cut short because the pipe was
full, faulthandler's ``...`` for a deep stack) is skipped; a stack is only
ever compared as a whole, so a damaged one just looks changed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

HEADER = re.compile(rb"^rallypoint-stacks 1 main (0x[0-9a-f]+) pid (\d+)$")
SAMPLE = re.compile(rb"^(?:Timeout|Sample) \(([0-9:.]+)\)!$")
FATAL = re.compile(rb"^Fatal Python error: (.*)$")
THREAD = re.compile(rb"^(Current thread|Thread) (0x[0-9a-f]+) \(most recent call first\):$")
STACK = re.compile(rb"^(Current thread's|) ?[Ss]tack \(most recent call first\):$")
FRAME = re.compile(rb'^  File "(.*)", line (\d+|\?\?\?) in (.*)$')


class DumpKind(enum.Enum):
    """Why faulthandler wrote the dump."""

    SAMPLE = "sample"  # the periodic dump
    FATAL = "fatal"  # a fatal signal; the worker is dying


@dataclass(frozen=True, slots=True)
class Frame:
    """One Python frame: where it is and in which function."""

    file: str
    line: int  # 0 when faulthandler printed ???
    function: str

    def where(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class ThreadStack:
    """One thread's frames, most recent first."""

    thread_id: int
    current: bool  # the thread that received the fatal signal
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Dump:
    """One faulthandler dump of every thread."""

    kind: DumpKind
    reason: str  # the signal's description for FATAL, the period for SAMPLE
    threads: tuple[ThreadStack, ...]
    main_thread: int | None  # from the bootstrap's first line

    @property
    def main(self) -> ThreadStack | None:
        """The main thread's stack (the last one listed when the main id is unknown)."""
        for thread in self.threads:
            if thread.thread_id == self.main_thread:
                return thread
        return self.threads[-1] if self.threads else None

    @property
    def crashed(self) -> ThreadStack | None:
        """The thread that received the fatal signal (else the main thread)."""
        return next((t for t in self.threads if t.current), self.main)


@dataclass(slots=True)
class _Building:
    kind: DumpKind
    reason: str
    threads: list[ThreadStack] = field(default_factory=list)
    thread: tuple[int, bool] | None = None
    frames: list[Frame] = field(default_factory=list)


class DumpParser:
    """Turns the channel's bytes, as they come, into :class:`Dump` records."""

    def __init__(self, own_files: frozenset[str] = frozenset()) -> None:
        self._own = own_files  # the bootstrap's files: their frames are dropped
        self._pending = b""
        self._dump: _Building | None = None
        self.main_thread: int | None = None
        self.pid: int | None = None

    def feed(self, data: bytes) -> list[Dump]:
        """Take more bytes; return the dumps they completed."""
        data = self._pending + data
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        done: list[Dump] = []
        for line in data[:cut].splitlines():
            self._line(line, done)
        return done

    def finish(self) -> list[Dump]:
        """The stream ended: return the dump in progress, if any."""
        done: list[Dump] = []
        if self._pending:
            self._line(self._pending, done)
            self._pending = b""
        self._close(done)
        return done

    def _line(self, line: bytes, done: list[Dump]) -> None:
        if match := FRAME.match(line):
            self._frame(match, done)
        elif match := THREAD.match(line):
            self._thread(int(match[2], 16), match[1] == b"Current thread")
        elif match := STACK.match(line):
            self._thread(0, bool(match[1]))
        elif match := SAMPLE.match(line):
            self._start(DumpKind.SAMPLE, match[1].decode(), done)
        elif match := FATAL.match(line):
            self._start(DumpKind.FATAL, match[1].decode("utf-8", "replace"), done)
        elif match := HEADER.match(line):
            self.main_thread, self.pid = int(match[1], 16), int(match[2])

    def _start(self, kind: DumpKind, reason: str, done: list[Dump]) -> None:
        self._close(done)
        self._dump = _Building(kind, reason)

    def _thread(self, thread_id: int, current: bool) -> None:
        if self._dump is None:
            return
        self._end_thread()
        self._dump.thread = (thread_id, current)

    def _frame(self, match: re.Match[bytes], done: list[Dump]) -> None:
        if self._dump is None or self._dump.thread is None:
            return
        file = match[1].decode("utf-8", "replace")
        if file in self._own:
            if self._dump.thread[0] == self.main_thread:
                self._close(done)  # the main thread's last frame: the dump is whole
            return
        line = int(match[2]) if match[2].isdigit() else 0
        self._dump.frames.append(Frame(file, line, match[3].decode("utf-8", "replace")))

    def _end_thread(self) -> None:
        dump = self._dump
        if dump is not None and dump.thread is not None:
            dump.threads.append(ThreadStack(*dump.thread, tuple(dump.frames)))
            dump.thread, dump.frames = None, []

    def _close(self, done: list[Dump]) -> None:
        if self._dump is None:
            return
        self._end_thread()
        dump, self._dump = self._dump, None
        if dump.threads:
            done.append(Dump(dump.kind, dump.reason, tuple(dump.threads), self.main_thread))


def format_stack(stack: ThreadStack, title: str) -> str:
    """A thread's stack in faulthandler's own words, most recent call first."""
    lines = [f'  File "{f.file}", line {f.line} in {f.function}' for f in stack.frames]
    return "\n".join([f"{title} (most recent call first):", *(lines or ["  <no Python frame>"])])
