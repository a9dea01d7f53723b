"""Descendants that left their worker's process group: found, stopped and reaped.

Design note: a worker's grandchild that calls ``setsid`` (a daemon, a double fork)
is no longer in the worker's process group, so the group's signals miss it. The
agent makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): an
orphaned descendant is then re-parented to the agent instead of to init. At the
end of each attempt, once the workers are gone, every child of the agent that is
neither a worker nor the guardian (nor a child the caller of the Python API had
before the launch) is an escapee: it is registered with the guardian, stopped in
the same steps as a worker (the signal, the grace, SIGKILL), and reaped, zombies
included. Children are read from ``/proc/<pid>/task/*/children``. Reaping is by
pid, never ``waitpid(-1)``, so the workers' own exit statuses are never taken.

If the agent is SIGKILLed, its escapees go to init; the guardian then finds them
by the worker environment they inherited (see ``_guardian_main``).

Under the Python API the caller's process is the agent, for the length of
:func:`rallypoint.launch`: a child the caller starts from another thread during
the launch, or one of its own descendants orphaned meanwhile, is taken for an
escapee. The subreaper setting is put back when the launch ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the launch path spawns the first workers before asyncio is imported
    import asyncio

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
ROUNDS = 3  # an escapee's own escapees are re-parented to us when it dies: look again


def children(pid: int) -> set[int]:
    """The pids of ``pid``'s children, from every one of its threads."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as handle:
                found.update(int(p) for p in handle.read().split())
    return found


class Subreaper:
    """This process as the reaper of its orphaned descendants, until :meth:`restore`."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        previous = ctypes.c_int(0)
        self._libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0)
        self._previous = previous.value
        self.active = self._libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        if not self.active:
            logger.warning(
                "cannot become a child subreaper (%s); escaped descendants go to init",
                os.strerror(ctypes.get_errno()),
            )
        self._before = frozenset(children(os.getpid()))

    def escapees(self, known: Iterable[int]) -> set[int]:
        """Children that are none of ``known`` and were not there before us."""
        return children(os.getpid()) - set(known) - self._before

    def restore(self) -> None:
        """Put back the subreaper setting the process had."""
        if self.active:
            self._libc.prctl(PR_SET_CHILD_SUBREAPER, self._previous, 0, 0, 0)
            self.active = False


def signal_escapee(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``, and to its process group when it leads one."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        os.kill(pid, signum)


async def wait_ended(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait up to ``timeout`` for ``pids`` to end (pidfd readiness); return those still alive."""
    import asyncio  # loaded by then: we run on its loop

    loop = asyncio.get_running_loop()
    ended: dict[int, asyncio.Future[None]] = {}
    fds: list[int] = []
    for pid in pids:
        future: asyncio.Future[None] = loop.create_future()
        ended[pid] = future
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            future.set_result(None)
            continue
        fds.append(fd)
        loop.add_reader(fd, _settle, future)
    if ended:
        await asyncio.wait(ended.values(), timeout=timeout)
    for fd in fds:
        loop.remove_reader(fd)
        os.close(fd)
    return {pid for pid, future in ended.items() if not future.done()}


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of ended children ``pids`` (by pid: never ``waitpid(-1)``)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
