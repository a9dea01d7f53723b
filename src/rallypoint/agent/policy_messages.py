"""What the agent's policy takes and gives: the events the driver saw, the actions it does.

The vocabulary of :mod:`rallypoint.agent.policy` (the transitions live there): every
event and action is a frozen value, so the driver and the tests build and compare them
freely, and :data:`EVENT_TYPES` lists the events the table must cover.
"""

from __future__ import annotations

import enum

from rallypoint.values import value


class Ending(enum.Enum):
    """How the node's part of the job ended (besides giving up, see :class:`GiveUp`)."""

    SUCCEEDED = "succeeded"
    SIGNALLED = "signalled"
    CLOSED = "closed"
    LOST = "lost"


# --- events (what the driver saw) ---------------------------------------------------------


@value
class Begin:
    """The driver starts; ``prestarted`` when attempt 0's workers already run."""

    prestarted: bool = False


@value
class RoundJoined:
    """The round asked for by :class:`JoinRound` formed with this node in it."""


@value
class Exited:
    """A worker of attempt ``attempt`` ended."""

    attempt: int
    pid: int
    succeeded: bool


@value
class Signalled:
    """The agent received a handled signal."""

    signum: int


@value
class Noticed:
    """The agent received a notice signal (``--forward-signals``): the job goes on."""

    signum: int


@value
class MembershipChanged:
    """The round this node runs no longer holds (a node left, restarts or waits to join)."""

    reason: str


@value
class JobClosed:
    """Another node ended the job."""

    reason: str


@value
class StoreLost:
    """This node lost the rendezvous store (or its lease)."""

    reason: str


@value
class Gathered:
    """Every event queued before :class:`GatherQueued` has been fed."""


@value
class Stopped:
    """The stop begun by :class:`StopWorkers` is over: every worker ended."""


@value
class RestartCounted:
    """The job-wide restart count after :class:`SpendRestart`."""

    count: int


@value
class Finished:
    """The bounded wait of :class:`Finish` for the other nodes is over."""


Event = (
    Begin
    | RoundJoined
    | Exited
    | Signalled
    | Noticed
    | MembershipChanged
    | JobClosed
    | StoreLost
    | Gathered
    | Stopped
    | RestartCounted
    | Finished
)
EVENT_TYPES: tuple[type[Event], ...] = (
    Begin,
    RoundJoined,
    Exited,
    Signalled,
    Noticed,
    MembershipChanged,
    JobClosed,
    StoreLost,
    Gathered,
    Stopped,
    RestartCounted,
    Finished,
)

# --- actions (what the driver does) -------------------------------------------------------


@value
class JoinRound:
    """Join the next round; feed :class:`RoundJoined` when it formed."""


@value
class StartWorkers:
    """Start (or adopt, if prestarted) the workers of attempt ``attempt``."""

    attempt: int


@value
class GatherQueued:
    """Feed every event already queued, then :class:`Gathered` (``pid`` failed first)."""

    pid: int


@value
class StopWorkers:
    """Send ``signum`` to every worker's group, SIGKILL what is left at ``deadline``."""

    signum: int
    deadline: float  # monotonic seconds


@value
class ForwardNotice:
    """Send ``signum`` to every running worker's group; nothing is stopped."""

    signum: int


@value
class NoteNotice:
    """Record the notice ``signum``: its sender gave it to every worker too, so do not resend."""

    signum: int


@value
class DropNotice:
    """Say the notice ``signum`` reached no worker (none runs, or they are being stopped)."""

    signum: int


@value
class HastenStop:
    """SIGKILL what is left of the stop in progress now."""


@value
class ReportFailure:
    """Build the failure report: ``failed`` pids failed on their own, the rest were stopped."""

    failed: tuple[int, ...]


@value
class SpendRestart:
    """Count one failure restart job-wide; feed :class:`RestartCounted`."""


@value
class RestartFree:
    """Say the workers restart because the round changed; no restart is spent."""

    reason: str


@value
class RestartSpent:
    """Say the workers restart after a failure; this is restart ``count``."""

    count: int


@value
class Finish:
    """Report success and wait (bounded) for the other nodes; feed :class:`Finished`."""


@value
class GiveUp:
    """The restart budget is spent: close the job, write the report, end as failed."""


@value
class End:
    """The node's part is over (cancel what is outstanding)."""

    ending: Ending
    reason: str = ""
    signum: int = 0
    before_workers: bool = False  # a signal that came before any worker started


Action = (
    JoinRound
    | StartWorkers
    | GatherQueued
    | StopWorkers
    | ForwardNotice
    | NoteNotice
    | DropNotice
    | HastenStop
    | ReportFailure
    | SpendRestart
    | RestartFree
    | RestartSpent
    | Finish
    | GiveUp
    | End
)
