"""The seams of the supervisor: what it needs of the attempts it starts.

The real ones are :class:`~rallypoint.agent.attempt.LocalAttempts` and
:class:`~rallypoint.agent.attempt.Attempt`; unit tests pass fakes
(``tests/fakes.py``). Only type checkers import this module: at run time the
supervisor never pays for defining these protocols.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from rallypoint.agent.job import AgentEvent
from rallypoint.failures.report import WorkerFailure
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.process import WorkerProcess


class RunningAttempt(Protocol):
    """What the driver needs of one attempt (:class:`~rallypoint.agent.attempt.Attempt`)."""

    number: int
    restart_count: int

    @property
    def elsewhere(self) -> str:
        """The culprit's headline when another node announced a hang this round, else ""."""
        ...

    def alive(self) -> list[WorkerProcess]:
        """Workers whose exit has not been seen yet."""
        ...

    async def stop(self, signum: int, grace: float, cut_short: asyncio.Event) -> None:
        """Stop every worker: ``signum``, ``grace`` seconds (less if cut short), SIGKILL."""
        ...

    def failure(self, worker: WorkerProcess, wall: float, mono: float) -> WorkerFailure:
        """What the summary says about ``worker``."""
        ...

    def notify(self, signum: int) -> int:
        """Pass ``signum`` on to every running worker's group; return how many got it."""
        ...

    def return_values(self) -> dict[int, object]:
        """Per global rank: a callable's return value, or None."""
        ...

    def rank_status(self, stacks: bool) -> list[dict[str, object]]:
        """Per local worker, for ``rallypoint status``."""
        ...


class Attempts(Protocol):
    """Starts attempts (:class:`~rallypoint.agent.attempt.LocalAttempts`; tests inject fakes)."""

    @property
    def prestarted(self) -> bool:
        """Whether attempt 0's workers already run."""
        ...

    def __call__(self, rdzv: RendezvousResult | None, number: int) -> Awaitable[RunningAttempt]:
        """Start attempt ``number`` of round ``rdzv`` (None for a prestarted attempt 0)."""
        ...


MakeAttempts = Callable[[Callable[[AgentEvent], None]], Attempts]
