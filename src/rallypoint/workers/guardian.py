"""A tiny watchdog process that kills the workers if the agent dies.

Design note: torchrun sets no parent-death signal, so a SIGKILLed launcher
leaves its workers running. ``PR_SET_PDEATHSIG`` would need a ``preexec_fn``
(which forces a fork of the live interpreter) and would only reach the worker,
not its own children. Instead, each agent starts one guardian: a minimal
``python -S`` process in its own session whose stdin is a pipe from the agent.
The agent writes ``+PGID`` when a worker starts and ``-PGID`` once its group is
gone. When the pipe reaches end of file -- the agent exited, however it died --
the guardian SIGKILLs every process group still registered, grandchildren
included, and exits. It blocks in ``read``: no polling.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys

logger = logging.getLogger(__name__)

GUARDIAN_SOURCE = r"""
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
groups = set()
for line in sys.stdin.buffer:
    sign, pgid = line[:1], int(line[1:])
    (groups.add if sign == b"+" else groups.discard)(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Guardian:
    """The agent's handle on its guardian process."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-S", "-c", GUARDIAN_SOURCE],
            stdin=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        assert self._process.stdin is not None
        self._pipe = self._process.stdin

    def _send(self, line: str) -> None:
        try:
            self._pipe.write(line.encode())
            self._pipe.flush()
        except (BrokenPipeError, ValueError):
            logger.warning("the guardian process is gone; workers may outlive a killed agent")

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if the agent dies before :meth:`release`."""
        self._send(f"+{pgid}\n")

    def release(self, pgid: int) -> None:
        """Forget ``pgid``: its group has been stopped by the agent."""
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Let the guardian exit (every group must be released first)."""
        with contextlib.suppress(BrokenPipeError):
            self._pipe.close()
        self._process.wait()

    @property
    def pid(self) -> int:
        """The guardian's pid (tests use it)."""
        return self._process.pid
