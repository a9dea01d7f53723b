"""Log files under ``--log-dir`` written by one thread, so that a slow disk never stalls the loop.

Design note: a regular file cannot be made non-blocking, and a ``--log-dir`` on a
shared filesystem (NFS, Lustre) can take seconds to open or append. So the agent's
loop only queues: :class:`LogFiles` owns one thread that opens, appends to and
closes every log file, in the order the chunks were queued (per file, and across
files). The queue is bounded in bytes (``QUEUED_MAX``): a disk slower than the
workers' output for that long makes the loop wait for room, which is what writing
directly did all the time. A file that cannot be opened or written is reported
once in the agent's log and its later chunks are dropped; the job goes on, as a
worker's own output to the console does. :meth:`LogFiles.drain` waits until all
that was queued is on disk; the supervisor calls it before the run ends (the
launcher leaves with ``os._exit``). An error of the thread itself (a bug) is
raised there, by its owner.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import BinaryIO

logger = logging.getLogger(__name__)

QUEUED_MAX = 64 << 20  # bytes queued before the loop waits for the disk


class LogFile:
    """One log file, appended to by the writer thread (a handle: nothing here does I/O)."""

    def __init__(self, files: LogFiles, path: str) -> None:
        self.path = path
        self._files = files
        self.handle: BinaryIO | None = None
        self.failed = False
        files.submit(self, b"")  # opened (made) at once, as before any output

    def write(self, data: bytes) -> None:
        """Queue ``data`` to be appended (and flushed)."""
        if data:
            self._files.submit(self, data)

    def close(self) -> None:
        """Queue the close, after every chunk queued before it."""
        self._files.submit(self, None)


class LogFiles:
    """The writer thread and its queue of ``(file, chunk)``; a chunk of None closes the file."""

    def __init__(self, queued_max: int = QUEUED_MAX) -> None:
        self._queued_max = queued_max
        self._queue: deque[tuple[LogFile, bytes | None]] = deque()
        self._queued = 0
        self._busy = False
        self._idle = False  # the thread waits for work
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def open(self, path: str) -> LogFile:
        """A log file at ``path``, to be appended to."""
        return LogFile(self, path)

    def submit(self, file: LogFile, data: bytes | None) -> None:
        """Queue one chunk; wait only while more than ``queued_max`` bytes are queued."""
        with self._cond:
            self._start()
            while self._queued > self._queued_max and self._error is None:
                self._cond.wait()
            self._queue.append((file, data))
            self._queued += len(data or b"")
            if self._idle:
                self._cond.notify_all()

    def drain(self) -> None:
        """Return once everything queued is written; raise what broke the thread, if it broke."""
        with self._cond:
            while (self._queue or self._busy) and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise RuntimeError("the log file writer stopped") from self._error

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-files", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                batch = self._take_all()
                for file, data in _joined(batch):
                    _apply(file, data)
                with self._cond:
                    self._busy = False
                    self._queued -= sum(len(data or b"") for _, data in batch)
                    self._cond.notify_all()
        except BaseException as exc:  # a bug: drain() raises it in the owner
            with self._cond:
                self._error = exc
                self._cond.notify_all()
            raise

    def _take_all(self) -> list[tuple[LogFile, bytes | None]]:
        """Everything queued so far (waiting for something), in order."""
        with self._cond:
            self._idle = True
            while not self._queue:
                self._cond.wait()
            self._idle = False
            self._busy = True
            batch = list(self._queue)
            self._queue.clear()
            return batch


def _joined(batch: list[tuple[LogFile, bytes | None]]) -> list[tuple[LogFile, bytes | None]]:
    """The batch with consecutive chunks for one file joined (one write each)."""
    runs: list[tuple[LogFile, list[bytes] | None]] = []
    for file, data in batch:
        last = runs[-1] if runs else None
        if data and last is not None and last[0] is file and last[1] is not None:
            last[1].append(data)
        else:
            runs.append((file, None if data is None else [data]))
    return [(file, None if parts is None else b"".join(parts)) for file, parts in runs]


def _apply(file: LogFile, data: bytes | None) -> None:
    """Open, append or close ``file`` (on the writer thread); an OSError marks it failed."""
    if file.failed:
        return
    try:
        if data is None:
            _close(file)
            return
        if file.handle is None:
            file.handle = open(file.path, "ab")  # noqa: SIM115 - closed by a None chunk
        if data:
            file.handle.write(data)
            file.handle.flush()
    except OSError as exc:
        file.failed = True
        logger.warning("log file %s: %s; its later output is not written", file.path, exc)
        with contextlib.suppress(OSError):
            _close(file)


def _close(file: LogFile) -> None:
    handle, file.handle = file.handle, None
    if handle is not None:
        handle.close()


LOG_FILES = LogFiles()  # the agent's one writer (see the design note)
