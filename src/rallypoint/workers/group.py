"""The local workers of one attempt: start them all, learn of exits, stop them.

Stopping escalates in documented steps (as Trio's subprocess cancel does):
the stop signal to every worker's process group, one shared grace period,
a warning naming each rank and pid still alive, then SIGKILL to every group.
Groups whose leader already exited get the same signals, so a worker's
leftover children never outlive the attempt. The grace and the wait after
SIGKILL are waited on the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

from rallypoint.clock import Clock, SystemClock
from rallypoint.workers.guardian import Guardian
from rallypoint.workers.process import WorkerProcess, describe_signal

logger = logging.getLogger(__name__)

KILL_WAIT = 10.0  # default seconds to wait for exits after SIGKILL before giving up on them


class WorkerGroup:
    """This node's workers for one attempt."""

    def __init__(
        self,
        guardian: Guardian,
        on_exit: Callable[[WorkerProcess], None],
        kill_wait: float = KILL_WAIT,
        clock: Clock | None = None,
    ) -> None:
        self._guardian = guardian
        self._on_exit = on_exit
        self._kill_wait = kill_wait
        self._clock = clock or SystemClock()
        self.workers: list[WorkerProcess] = []
        self._changed = asyncio.Event()

    def adopt(self, workers: Sequence[WorkerProcess]) -> None:
        """Watch already spawned workers (their exits may even have happened already)."""
        loop = asyncio.get_running_loop()
        for worker in workers:
            worker.watch_exit(loop, self._exited)
            self.workers.append(worker)
            logger.debug("watching local rank %d, pid %d", worker.request.local_rank, worker.pid)

    def _exited(self, worker: WorkerProcess) -> None:
        self._changed.set()
        self._on_exit(worker)

    @property
    def alive(self) -> list[WorkerProcess]:
        """Workers whose exit has not been seen yet."""
        return [w for w in self.workers if w.running]

    async def wait_all_exited(self) -> None:
        """Return once every worker has exited."""
        while self.alive:
            self._changed.clear()
            await self._changed.wait()

    def signal_process(self, pid: int, signum: int) -> WorkerProcess | None:
        """Send ``signum`` to ``pid`` if it is a worker or in a worker's group; return that worker.

        Any other pid is left alone (and None returned): only our own are signalled.
        """
        owner = next((w for w in self.workers if w.running and w.owns(pid)), None)
        if owner is not None:
            owner.signal_one(pid, signum)
        return owner

    def notify(self, signum: int) -> int:
        """Send ``signum`` to every running worker's process group; return how many got it."""
        running = self.alive
        for worker in running:
            worker.signal_group(signum)
        return len(running)

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            worker.signal_group(signum)

    async def stop(
        self, signum: int, grace: float, cut_short: asyncio.Event | None = None
    ) -> list[WorkerProcess]:
        """Stop every worker and its children; return the workers that needed SIGKILL.

        Args:
            signum: the first signal sent to each process group.
            grace: seconds allowed for all of them together before SIGKILL.
            cut_short: when this is set during the grace, SIGKILL at once.
        """
        self._signal_all(signum)
        await self._wait_grace(grace, cut_short)
        stubborn = self.alive
        for worker in stubborn:
            logger.warning(
                "local rank %d (pid %d) did not stop within %.1f s of %s; sending SIGKILL",
                worker.request.local_rank,
                worker.pid,
                grace,
                describe_signal(signum),
            )
        self._signal_all(signal.SIGKILL)
        try:
            deadline = self._clock.monotonic() + self._kill_wait
            await self._clock.wait_until(self.wait_all_exited(), deadline)
        except TimeoutError:  # stuck in the kernel (D state): as torchrun, give up on it
            for worker in self.alive:
                logger.error(
                    "local rank %d (pid %d) did not end %.0f s after SIGKILL; "
                    "leaving it to the guardian",
                    worker.request.local_rank,
                    worker.pid,
                    self._kill_wait,
                )
        for worker in self.workers:
            if not worker.running:
                self._guardian.release(worker.pid)
        await self._guardian.stop_escapees(signum, grace, self._kill_wait)
        return stubborn

    async def _wait_grace(self, grace: float, cut_short: asyncio.Event | None) -> None:
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self.wait_all_exited())]
        if cut_short is not None:
            waiters.append(asyncio.ensure_future(cut_short.wait()))
        first = asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        with contextlib.suppress(TimeoutError):
            await self._clock.wait_until(first, self._clock.monotonic() + grace)
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
