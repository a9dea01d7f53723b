"""This node's standbys: one per local rank, ready to become the next attempt's workers.

Design note: what a standby is and how it becomes a worker is in
:mod:`rallypoint.workers.standby`; this module decides when there are some.
The pool is filled after an attempt's workers have started (never before, so
the imports never slow the workers' first steps, and at a lower CPU
priority), and before the first round of a job on several nodes, so that the
imports overlap the wait for the other nodes. The launchpad asks the pool for
a local rank's standby before it spawns a cold worker; a standby that is not
there, or is gone, means a cold start. So does, on a restart, a standby still
importing (it says when it is done): waiting for it would make a crash early
in an attempt restart slower than cold, for a script that never imports what
it warms; it stays for the restart after. Before this agent's first workers
(standbys started while the first rendezvous waits) a standby is taken as it
is, since the alternative is the same imports from the start. The guardian
covers every standby as it covers workers, and the pool kills those left
once no restart can take them, and when the run ends.
"""

from __future__ import annotations

import logging
import os
import resource

from rallypoint.agent.job import Job
from rallypoint.agent.worker_env import standby_env
from rallypoint.config import EntrypointKind
from rallypoint.errors import LaunchError
from rallypoint.workers.command import worker_argv
from rallypoint.workers.escapees import wait_ended
from rallypoint.workers.guardian import Guardian
from rallypoint.workers.process import SpawnRequest, WorkerProcess
from rallypoint.workers.standby import Standby

logger = logging.getLogger(__name__)

STANDBY_NICE = 10  # how much lower a standby's priority is while it imports
KILL_WAIT = 2.0  # seconds to wait for killed standbys to end


def standby_nice() -> int:
    """STANDBY_NICE if a standby may come back to this process's priority after, else 0.

    Raising a priority again needs CAP_SYS_NICE or room under RLIMIT_NICE; a
    worker must never run lower than a cold one would.
    """
    if os.geteuid() == 0:
        return STANDBY_NICE
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return STANDBY_NICE if 20 - os.getpriority(os.PRIO_PROCESS, 0) <= soft else 0


class StandbyPool:
    """The standbys of one agent, by local rank."""

    def __init__(self, job: Job, guardian: Guardian, nice: int | None = None) -> None:
        self._job = job
        self._guardian = guardian
        self._nice = standby_nice() if nice is None else nice
        self._waiting: dict[int, Standby] = {}
        self._gone: list[Standby] = []
        self._before_first_workers = True  # until then a take may wait for the imports

    def workers_started(self) -> None:
        """Workers have run here: from now on only a standby done importing is taken."""
        self._before_first_workers = False

    def fill(self) -> None:
        """Start a standby for each local rank that has none (a failure only means cold starts)."""
        if self._job.entrypoint.kind is EntrypointKind.BINARY:
            return  # not Python: nothing to warm (the CLI never asks; the API might)
        for local_rank in range(self._job.config.nproc_per_node):
            if local_rank not in self._waiting:
                try:
                    standby = self._spawn(local_rank)
                except LaunchError as exc:
                    logger.warning("%s; the next workers start cold", exc)
                    return
                self._guardian.watch(standby.pid)
                self._waiting[local_rank] = standby
                logger.debug("local rank %d: standby pid %d", local_rank, standby.pid)

    def _spawn(self, local_rank: int) -> Standby:
        job = self._job
        sample = worker_argv(job.entrypoint, local_rank, job.base_env, payload="-")
        env = standby_env(job.config, local_rank, job.base_env)
        return Standby.spawn(local_rank, sample, env, job.config.warm_modules, self._nice)

    def take(self, request: SpawnRequest) -> WorkerProcess | None:
        """The worker ``request`` describes, made of this rank's standby; None to start cold."""
        standby = self._waiting.get(request.local_rank)
        if standby is None:
            return None
        if not (standby.ready() or self._before_first_workers):
            logger.info(
                "local rank %d: standby pid %d is still importing; a cold start now, it waits on",
                request.local_rank,
                standby.pid,
            )
            return None
        del self._waiting[request.local_rank]
        worker = standby.take(request)
        if worker is None:
            self._gone.append(standby)
            return None
        logger.info(
            "local rank %d: standby pid %d takes over (%s KiB resident)",
            request.local_rank,
            worker.pid,
            worker.standby_kib,
        )
        return worker

    def describe(self) -> list[dict[str, object]]:
        """The waiting standbys, for ``rallypoint status``: local rank, pid, resident KiB."""
        return [
            {"local_rank": rank, "pid": s.pid, "rss_kib": s.rss_kib(), "ready": s.ready()}
            for rank, s in sorted(self._waiting.items())
        ]

    async def drain(self) -> None:
        """Kill and reap every standby left: no restart can take them any more."""
        left = [*self._waiting.values(), *self._gone]
        self._waiting.clear()
        self._gone.clear()
        for standby in left:
            standby.kill()
        await wait_ended([s.pid for s in left if not s.reaped], KILL_WAIT)
        for standby in left:
            if standby.reap():
                self._guardian.release(standby.pid)

    async def aclose(self) -> None:
        """Kill and reap every standby left, as the run ends."""
        await self.drain()
