"""A standby: an interpreter that has imported the job's modules and waits to become a worker.

Design note: a restarted worker spends most of its start in the interpreter's
own start-up and ``import torch``, which do not depend on the round. A standby
does both ahead of time, started through the worker bootstrap like a worker
(same interpreter, flags and environment but for the round's values), and
then says it is ready on a unix socket and blocks reading it
(``workers/_standby.py`` is its side). To
become a worker it is sent, in one message, the worker's stdout and stderr
(pipes or a pseudo-terminal, made by the launchpad exactly as for a cold
spawn) as SCM_RIGHTS, and its bootstrap argv and environment; it then runs
the program as a cold worker would. It is spawned as a worker is, leading
its own session, so the process the agent watches, signals and registers
with the guardian is the same one from start to end.

Until it is told, its stdout and stderr are pipes the agent holds; whatever
its imports wrote there is passed on to the worker's own streams at the
hand-over, where a cold worker would have written it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence

from rallypoint.errors import LaunchError
from rallypoint.workers._standby import READY
from rallypoint.workers.command import standby_argv
from rallypoint.workers.process import SpawnRequest, WorkerProcess

logger = logging.getLogger(__name__)

HELD_MAX = 1 << 16  # bytes passed on from what a standby wrote before the hand-over


def encode_order(argv: Sequence[str], env: Mapping[str, str]) -> bytes:
    """The hand-over after its first byte: argv count, argv, ``KEY=value``, NUL separated."""
    fields = [str(len(argv)).encode(), *map(os.fsencode, argv)]
    fields.extend(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items())
    return b"\0".join(fields)


class Standby:
    """One waiting standby interpreter for local rank ``local_rank``."""

    def __init__(
        self,
        local_rank: int,
        popen: subprocess.Popen[bytes],
        control: socket.socket,
        held: tuple[int, int],
    ) -> None:
        self.local_rank = local_rank
        self._popen = popen
        self._control: socket.socket | None = control
        self._held = held
        self._ready = False

    @classmethod
    def spawn(
        cls,
        local_rank: int,
        worker_argv: list[str],
        env: Mapping[str, str],
        modules: tuple[str, ...],
        nice: int,
    ) -> Standby:
        """Start a standby for the worker whose cold argv is ``worker_argv``.

        Raises:
            LaunchError: the interpreter cannot be started.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            argv = standby_argv(worker_argv, theirs.fileno(), nice, modules)
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                stdout=out_write,
                stderr=err_write,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            ours.close()
            os.close(out_read)
            os.close(err_read)
            raise LaunchError(f"cannot start a standby: {exc.strerror}") from exc
        finally:
            theirs.close()
            os.close(out_write)
            os.close(err_write)
        return cls(local_rank, popen, ours, (out_read, err_read))

    @property
    def pid(self) -> int:
        """Process id; it leads its own process group and session."""
        return self._popen.pid

    def rss_kib(self) -> int | None:
        """Resident memory now, in KiB (None once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def ready(self) -> bool:
        """Whether its imports are done (it said so on the control socket), without waiting."""
        if not self._ready and self._control is not None:
            try:  # read, not peeked: a close with unread data would reset the standby's end
                said = self._control.recv(len(READY), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                said = b""
            except OSError:
                return False
            self._ready = said == READY
        return self._ready

    def take(self, request: SpawnRequest) -> WorkerProcess | None:
        """Make this standby the worker ``request`` describes; None if it cannot be.

        The request's fds stay the caller's to close, as after a spawn.
        """
        if self._control is None or self._popen.poll() is not None:
            self.kill()
            return None
        streams = [
            request.stdout if request.stdout is not None else 1,
            request.stderr if request.stderr is not None else 2,
        ]
        channel = request.argv[3]
        fds = streams if channel == "-" else [*streams, int(channel)]
        self._pass_on_held(streams)
        self.ready()  # reads its READY if it came, so that closing our end is a clean end
        resident = self.rss_kib()
        try:
            socket.send_fds(self._control, [b"G"], fds)
            self._control.sendall(encode_order(request.argv[3:], request.env))
            self._control.shutdown(socket.SHUT_WR)
        except OSError as exc:
            logger.warning("standby pid %d is gone (%s); starting cold", self.pid, exc)
            self.kill()
            return None
        self._close()
        return WorkerProcess(request, self._popen, resident)

    def _pass_on_held(self, targets: list[int]) -> None:
        """Copy what the standby wrote so far to the worker's own streams, without blocking."""
        for held, target in zip(self._held, targets, strict=True):
            os.set_blocking(held, False)
            with contextlib.suppress(BlockingIOError):
                data = os.read(held, HELD_MAX)
                if data:
                    _write_some(target, data)

    def kill(self) -> None:
        """SIGKILL the standby's group (it is reaped by :meth:`reap`), unless already reaped."""
        if not self.reaped:  # the pid is still this one's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self._close()

    def reap(self) -> bool:
        """Collect its exit status if it has ended; True once it has."""
        return self._popen.poll() is not None

    @property
    def reaped(self) -> bool:
        """Whether its exit status was collected (its pid may then be another's)."""
        return self._popen.returncode is not None

    def _close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
            for fd in self._held:
                os.close(fd)


def _write_some(fd: int, data: bytes) -> None:
    """Write what fits now; a full pipe or terminal loses the rest (said in the log)."""
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        written = os.write(fd, data)
    except OSError:
        written = 0
    finally:
        os.set_blocking(fd, blocking)
    if written < len(data):
        logger.warning("dropped %d bytes a standby wrote while it waited", len(data) - written)
