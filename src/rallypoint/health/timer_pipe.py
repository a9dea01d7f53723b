"""The elastic timers' named pipe, read on the agent's event loop.

Design note: torch's ``FileTimerClient`` opens the pipe with ``O_NONBLOCK``,
which fails unless a reader already holds it open; so the pipe is made and
opened before any worker starts (even before the event loop exists), and the
kernel keeps what workers write until the loop attaches the reader. It is
opened read-write, so it never reads end of file when the last writer closes
(a FIFO with no writer is always readable: that would spin). Reading is
event-driven, and one task sleeps on the injected clock until the next
deadline: no polling. Deadlines are wall-clock times, as torch's client writes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rallypoint.clock import Clock
from rallypoint.health import ENABLE_VARIABLE, FILE_VARIABLE
from rallypoint.health.file_timer import DeadlineTable, Expiry, parse_request
from rallypoint.ids import uuid4_text

if TYPE_CHECKING:  # the pipe is made before asyncio is imported
    import asyncio

logger = logging.getLogger(__name__)

READ_SIZE = 65536


def timer_file(base_env: Mapping[str, str], temp_root: str) -> str | None:
    """Where the pipe goes when timers are enabled: the launcher's choice, else a fresh path."""
    if base_env.get(ENABLE_VARIABLE) != "1":
        return None
    return base_env.get(FILE_VARIABLE) or os.path.join(temp_root, f"watchdog_timer_{uuid4_text()}")


class TimerPipe:
    """One attempt's timer pipe: made, read, and removed at the end."""

    def __init__(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # as torch's server: an old pipe is replaced
        os.mkfifo(path, 0o600)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._table = DeadlineTable()
        self._partial = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alarm: asyncio.Task[None] | None = None
        self._clock: Clock | None = None
        self._on_expiry: Callable[[Expiry], None] = lambda _expiry: None

    def attach(self, clock: Clock, on_expiry: Callable[[Expiry], None]) -> None:
        """Start reading on the running loop; ``on_expiry`` is called for each expired pid."""
        import asyncio  # loaded by then: we run on its loop

        self._loop = asyncio.get_running_loop()
        self._clock, self._on_expiry = clock, on_expiry
        self._loop.add_reader(self._fd, self._readable)
        self._readable()  # what workers wrote before the loop existed

    def forget(self, pid: int) -> None:
        """Drop the timers of a process that ended."""
        self._table.forget(pid)
        self._rearm()

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                self._table.apply(parse_request(line))
            except ValueError as exc:
                logger.warning("timer pipe %s: %s", self.path, exc)
        self._rearm()

    def _rearm(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        deadline = self._table.next_deadline()
        if deadline is None or self._loop is None or self._clock is None:
            return
        self._alarm = self._loop.create_task(self._ring_at(deadline - self._clock.wall()))

    async def _ring_at(self, delay: float) -> None:
        """Sleep (on the injected clock) until the next deadline, then expire what is due."""
        assert self._clock is not None
        await self._clock.sleep(max(0.0, delay))
        self._alarm = None
        for expiry in self._table.expire(self._clock.wall()):
            self._on_expiry(expiry)
        self._rearm()

    def close(self) -> None:
        """Stop reading and remove the pipe (a second call does nothing)."""
        if self._fd < 0:
            return
        if self._alarm is not None:
            self._alarm.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
