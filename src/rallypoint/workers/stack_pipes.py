"""The stack channels of one attempt's Python workers: one pipe each, made before the spawn.

Their reader is :mod:`rallypoint.hangs.watch`; this is kept apart so that the launch path (which
spawns the first workers before the agent's event loop and the rest of it are
even imported) pays for two system calls per worker and nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from rallypoint.workers.command import StackChannel

PIPE_SIZE = 1 << 20  # room for a dump of many threads while the agent is busy


class StackPipes:
    """The read ends, by local rank, of the pipes whose write ends the workers get."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.read_ends: dict[int, tuple[int, int]] = {}  # local rank -> (global rank, fd)

    def open(self, local_rank: int, global_rank: int) -> StackChannel:
        """A new pipe for one worker; the caller passes, then closes, the write end."""
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # above the user's limit: the default size
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(read_fd, False)
        self.read_ends[local_rank] = (global_rank, read_fd)
        return StackChannel(write_fd, self.period)

    def take(self) -> dict[int, tuple[int, int]]:
        """Hand the read ends over to their reader, who closes them."""
        ends, self.read_ends = self.read_ends, {}
        return ends

    def close(self) -> None:
        """Close every read end (when the workers never started, or nobody took them)."""
        for _, fd in self.read_ends.values():
            os.close(fd)
        self.read_ends.clear()
