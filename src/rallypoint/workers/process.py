"""One worker process: spawned in its own session, watched through a pidfd.

Design note: the worker leads its own session and process group
(``start_new_session=True``), so every signal goes to the group with
``killpg`` and reaches the worker's own children too. As under torchrun it has
no controlling terminal, though its stdin (and maybe stdout) may be the user's
terminal: Ctrl-C reaches the launcher only, which forwards it. Its exit is an event:
the kernel makes the pidfd readable when the process ends, and the agent's
event loop calls back; nothing polls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rallypoint.errors import LaunchError
from rallypoint.workers.exit_status import ExitStatus

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """How to start one worker; ``stdout``/``stderr`` are fds or None to inherit.

    stdin is always inherited, as under torchrun.
    """

    local_rank: int
    argv: Sequence[str]
    env: Mapping[str, str]
    stdout: int | None = None
    stderr: int | None = None
    pass_fds: tuple[int, ...] = ()  # kept open in the worker (its stack channel)


class WorkerProcess:
    """A running (or finished) worker."""

    def __init__(
        self, request: SpawnRequest, popen: subprocess.Popen[bytes], standby_kib: int | None = None
    ) -> None:
        self.request = request
        self._popen = popen
        self.status: ExitStatus | None = None
        self.standby_kib = standby_kib  # a warm worker: its standby's resident memory

    @classmethod
    def spawn(cls, request: SpawnRequest) -> WorkerProcess:
        """Start the worker as the leader of a new session.

        Raises:
            LaunchError: when the program cannot be executed at all.
        """
        try:
            popen = subprocess.Popen(
                list(request.argv),
                env=dict(request.env),
                stdout=request.stdout,
                stderr=request.stderr,
                start_new_session=True,
                close_fds=True,
                pass_fds=request.pass_fds,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {request.argv[0]!r}: {exc.strerror}") from exc
        return cls(request, popen)

    @property
    def pid(self) -> int:
        """Process id, which is also its process group and session id."""
        return self._popen.pid

    @property
    def running(self) -> bool:
        """True until the exit has been reaped."""
        return self.status is None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the worker's whole process group (gone groups are fine)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def owns(self, pid: int) -> bool:
        """True when ``pid`` is this worker or a process in its process group."""
        if pid == self.pid:
            return True
        try:
            return os.getpgid(pid) == self.pid
        except ProcessLookupError:
            return False

    def signal_one(self, pid: int, signum: int) -> None:
        """Send ``signum`` to ``pid`` alone, the worker or one of its group (see :meth:`owns`)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)

    def watch_exit(
        self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[WorkerProcess], None]
    ) -> None:
        """Call ``on_exit(self)`` on the loop once the process has ended and been reaped."""
        pidfd = os.pidfd_open(self.pid)

        def ready() -> None:
            returncode = self._popen.poll()
            if returncode is None:
                return
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.status = ExitStatus.from_returncode(returncode)
            on_exit(self)

        loop.add_reader(pidfd, ready)


def describe_signal(signum: int) -> str:
    """``15`` -> ``SIGTERM``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
