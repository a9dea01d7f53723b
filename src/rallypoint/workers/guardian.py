"""A tiny watchdog process that kills the workers if the agent dies, and the agent's escapees.

Design note: torchrun sets no parent-death signal, so a SIGKILLed launcher
leaves its workers running. ``PR_SET_PDEATHSIG`` would need a ``preexec_fn``
(which forces a fork of the live interpreter) and would only reach the worker,
not its own children. Instead, each agent starts one guardian: a minimal
``python -S`` process in its own session whose stdin is a pipe from the agent
(its protocol is in ``_guardian_main``). The agent registers each worker's
process group when it starts and forgets it once the group is gone. When the
pipe reaches end of file -- the agent exited, however it died -- the guardian
SIGKILLs every process group still registered, grandchildren included, and
exits. It blocks in ``read``: no polling, and it blocks every catchable signal.

The :class:`Guardian` handle also makes the agent a child subreaper and stops the
descendants that escaped their worker's group (see :mod:`.escapees`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from rallypoint.workers.escapees import ROUNDS, Subreaper, reap, signal_escapee, wait_ended

logger = logging.getLogger(__name__)

GUARDIAN_MAIN = os.path.join(os.path.dirname(__file__), "_guardian_main.py")
MARK_VARIABLE = "TORCHELASTIC_ERROR_FILE"  # unique per worker, inherited by its descendants


class Guardian:
    """The agent's handle on its guardian process."""

    def __init__(self) -> None:
        self._subreaper = Subreaper()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:  # the child inherits the mask: no signal reaches it before it blocks them itself
            self._process = subprocess.Popen(
                [sys.executable, "-S", GUARDIAN_MAIN],
                stdin=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        assert self._process.stdin is not None
        self._pipe = self._process.stdin
        self._workers: set[int] = set()  # every worker of the run
        self._watched: set[int] = set()  # groups registered and not released
        self._stuck: set[int] = set()  # escapees that outlived SIGKILL (kernel D state)

    def _send(self, line: str) -> None:
        try:
            self._pipe.write(line.encode() + b"\n")
            self._pipe.flush()
        except (BrokenPipeError, ValueError):
            logger.warning("the guardian process is gone; workers may outlive a killed agent")

    def watch(self, pgid: int, env: Mapping[str, str] | None = None) -> None:
        """Kill process group ``pgid`` if the agent dies before :meth:`release`.

        Args:
            pgid: the worker's pid, which leads its process group.
            env: the worker's environment; its unique entry marks its descendants.
        """
        self._workers.add(pgid)
        self._watched.add(pgid)
        mark = (env or {}).get(MARK_VARIABLE)
        if mark:
            self._send(f"E{MARK_VARIABLE}={mark}")
        self._send(f"+G{pgid}")

    def release(self, pgid: int) -> None:
        """Forget ``pgid``: its group has been stopped by the agent."""
        self._watched.discard(pgid)
        self._send(f"-G{pgid}")

    async def stop_escapees(self, signum: int, grace: float, kill_wait: float) -> None:
        """Stop and reap the children that are neither workers nor the guardian."""
        for _ in range(ROUNDS):
            found = self._subreaper.escapees(self._workers | self._stuck | {self.pid})
            if not found:
                return
            await self._stop(found, signum, grace, kill_wait)

    async def _stop(self, pids: set[int], signum: int, grace: float, kill_wait: float) -> None:
        for pid in pids:
            self._send(f"+P{pid}")
            signal_escapee(pid, signum)
        stubborn = await wait_ended(pids, grace)
        for pid in stubborn:
            logger.warning(
                "pid %d, which escaped its worker's process group, did not stop within %.1f s; "
                "sending SIGKILL",
                pid,
                grace,
            )
            signal_escapee(pid, signal.SIGKILL)
        stuck = await wait_ended(stubborn, kill_wait)
        reap(pids - stuck)
        self._stuck |= stuck
        for pid in pids - stuck:
            self._send(f"-P{pid}")
        logger.info("stopped descendants that escaped their worker's group: %s", sorted(pids))

    def close(self) -> None:
        """Let the guardian exit, without waiting for it.

        It kills any group still registered; unless every group had been released
        (a normal end), it also sweeps the workers' descendants, as if the agent had
        died. The subreaper setting is put back.
        """
        if not self._watched:
            self._send("Q")
        with contextlib.suppress(BrokenPipeError):
            self._pipe.close()
        self._subreaper.restore()
        self._process.poll()

    async def aclose(self, wait: float = 2.0) -> None:
        """:meth:`close`, then reap the guardian on the event loop (never blocking it)."""
        self.close()
        if self._process.returncode is None:
            await wait_ended([self.pid], wait)
            self._process.poll()

    @property
    def pid(self) -> int:
        """The guardian's pid (tests use it)."""
        return self._process.pid
