"""What the supervisor needs from a rendezvous, whichever kind it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from rallypoint.rendezvous.machine import RunningDecision
from rallypoint.rendezvous.result import RendezvousResult

if TYPE_CHECKING:
    from rallypoint.hangs.board import StackBoard


class Rendezvous(Protocol):
    """One node's handle on the job's rendezvous.

    ``next_round`` joins the next round and returns this node's place in it;
    while the workers run, ``listen`` gets a call on every change of the
    store and ``running_decision`` says whether the round still holds.
    """

    async def next_round(self) -> RendezvousResult:
        """Join the next round; raises RendezvousError subclasses."""
        ...

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) whenever the rendezvous state changes."""
        ...

    def running_decision(self) -> RunningDecision:
        """Whether the current round's workers may keep running."""
        ...

    def stack_board(self) -> StackBoard | None:
        """Where the nodes share their ranks' stack digests (None: a single node)."""
        ...

    @property
    def failure(self) -> BaseException | None:
        """The error of a background task that broke this rendezvous, if one did."""
        ...

    async def spend_restart(self) -> int:
        """Count one failure restart, job-wide; return the new count."""
        ...

    async def close_job(self, succeeded: bool, message: str) -> None:
        """Mark the job over for every node."""
        ...

    async def finish(self) -> None:
        """This node's workers succeeded: wait (bounded) for the other members."""
        ...

    async def close(self) -> None:
        """Leave the rendezvous and release what this node holds."""
        ...
