"""Spawn a single-node job's first workers before the event loop exists.

See :mod:`rallypoint.agent.launchpad` for why. Multi-node jobs must first
agree on a round with the other nodes, so they start the normal way.
"""

from __future__ import annotations

from dataclasses import dataclass

from rallypoint.agent.job import Job
from rallypoint.agent.launchpad import Launchpad, Prepared
from rallypoint.clock import Clock
from rallypoint.logs.layout import RunLayout
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.rendezvous.single import SingleNodeRendezvous
from rallypoint.workers.guardian import Guardian


@dataclass(frozen=True, slots=True)
class Prestart:
    """What the supervisor adopts: the run's folders, guardian, rendezvous and first workers."""

    layout: RunLayout
    guardian: Guardian
    rendezvous: SingleNodeRendezvous
    rdzv: RendezvousResult
    prepared: Prepared


def prestart(job: Job, clock: Clock, early_signals: list[int]) -> Prestart | None:
    """Spawn attempt 0 now, or return None when this job cannot start that way.

    Raises:
        LaunchError: the workers cannot be started (nothing is left behind).
    """
    if job.config.max_nodes != 1 or early_signals:
        return None
    layout = RunLayout.create(job.config.log_dir, job.config.run_id, job.temp_root)
    guardian = Guardian()
    rendezvous: SingleNodeRendezvous | None = None
    try:
        rendezvous = SingleNodeRendezvous(job.config, job.host)
        rdzv = rendezvous.round_now()
        prepared = Launchpad(job, rdzv, 0, layout.attempt_dir(0)).launch(guardian, clock)
        rendezvous.serve_store()  # only now: the workers' connections wait until it answers
    except BaseException:
        if rendezvous is not None:
            rendezvous.release()
        guardian.close()  # kills whatever was already spawned
        raise
    return Prestart(layout, guardian, rendezvous, rdzv, prepared)
