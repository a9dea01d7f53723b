"""The agent's decisions as a pure state machine: (state, event, now) -> (state, actions).

Design note: as in h11's ``_state.py``, the policy never sees a process, a store or
a clock. The supervisor (the driver) turns what happens on its loop into the
events below, feeds them with the current monotonic time, and carries out the
actions it gets back. Every decision of a node's life lives here: when to join a
round, start, stop or restart the workers; when a restart is spent against the
job-wide budget and when the budget is gone; which exits count (only those of the
current attempt, and only before its stop began: later ones were caused by the
stop); how a handled signal ends the job (forwarded to the workers once they
run, the launcher's own death before); that a notice signal (``--forward-signals``)
is passed on to running workers and changes nothing else; what a change of the
rendezvous means.

The transitions are one table, :data:`TRANSITIONS`, keyed by phase and event
type. An event the table does not list for the current phase is a bug in the
driver: :func:`step` raises :class:`PolicyError` and the state is unchanged.

Phases::

    INIT --Begin--> JOINING --RoundJoined--> RUNNING
    INIT --Begin(prestarted)--> RUNNING
    RUNNING --Exited(failed)--> FAILING --Gathered--> STOPPING
    RUNNING --Exited(all succeeded) | Signalled | rendezvous change--> STOPPING
    STOPPING --Stopped--> COUNTING (failure) | JOINING (membership) | FINISHING (success) | DONE
    COUNTING --RestartCounted--> JOINING (budget left) | DONE (give up)
    FINISHING --Finished--> DONE
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace

from rallypoint.values import value

RESTART_GRACE = 30.0  # torchrun stops a failed group with a fixed 30 s grace


class PolicyError(Exception):
    """The driver fed an event that the current phase does not accept."""


class Phase(enum.Enum):
    """Where a node is in its life."""

    INIT = "init"  # nothing happened yet
    JOINING = "joining"  # waiting for the next round
    RUNNING = "running"  # the current attempt's workers run
    FAILING = "failing"  # a worker failed; exits already queued are gathered before the stop
    STOPPING = "stopping"  # the current attempt's workers are being stopped
    COUNTING = "counting"  # a failure restart is being counted job-wide
    FINISHING = "finishing"  # every worker succeeded; waiting (bounded) for the other nodes
    DONE = "done"  # the node's part of the job is over


class StopReason(enum.Enum):
    """Why the current attempt's workers are being stopped; it decides what follows."""

    SUCCESS = "success"  # all exited 0: stop leftovers, then finish
    FAILURE = "failure"  # a worker failed: count a restart
    MEMBERSHIP = "membership"  # the round changed: restart for free
    SIGNAL = "signal"  # a handled signal: forward it, then end
    CLOSED = "closed"  # the job is over elsewhere
    LOST = "lost"  # this node lost the store


class Ending(enum.Enum):
    """How the node's part of the job ended (besides giving up, see :class:`GiveUp`)."""

    SUCCEEDED = "succeeded"
    SIGNALLED = "signalled"
    CLOSED = "closed"
    LOST = "lost"


@value
class Settings:
    """The configuration the policy decides with."""

    nproc: int  # workers per attempt
    max_restarts: int  # the job-wide budget of failure restarts
    shutdown_grace: float  # seconds a signalled or finished group gets before SIGKILL
    restart_grace: float = RESTART_GRACE  # seconds a failed or changed group gets
    notices_reach_workers: bool = False  # their sender signals every process (proctrack/linuxproc)


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

# --- state ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    """Everything the policy remembers.

    Attributes:
        phase: where the node is.
        attempt: the number of the current (or last) attempt; -1 before the first.
        succeeded: pids of the current attempt that exited 0.
        failed: pids of the current attempt that failed before its stop began.
        stop: why the current stop happens (meaningful from FAILING to STOPPING).
        signum: the handled signal that ends the job, 0 if none.
        reason: why the job is closed or lost, or why the round changed.
    """

    phase: Phase = Phase.INIT
    attempt: int = -1
    succeeded: frozenset[int] = frozenset()
    failed: tuple[int, ...] = ()
    stop: StopReason | None = None
    signum: int = 0
    reason: str = ""


Result = tuple[State, tuple[Action, ...]]
Handler = Callable[[Settings, State, Event, float], Result]


def _stay(_settings: Settings, state: State, _event: Event, _now: float) -> Result:
    return state, ()


def _join(state: State) -> Result:
    return replace(state, phase=Phase.JOINING, succeeded=frozenset(), failed=(), stop=None), (
        JoinRound(),
    )


def _end(state: State, ending: Ending) -> Result:
    reason = state.reason if ending in (Ending.CLOSED, Ending.LOST) else ""
    before = state.attempt < 0 and bool(state.signum)
    action = End(ending, reason, state.signum, before_workers=before)
    return replace(state, phase=Phase.DONE), (action,)


def _stop(settings: Settings, state: State, reason: StopReason, now: float) -> Result:
    signum = state.signum if reason is StopReason.SIGNAL else int(signal.SIGTERM)
    short = reason in (StopReason.SUCCESS, StopReason.SIGNAL)
    grace = settings.shutdown_grace if short else settings.restart_grace
    stopping = replace(state, phase=Phase.STOPPING, stop=reason)
    return stopping, (StopWorkers(signum, now + grace),)


def _begin(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, Begin)
    if event.prestarted:
        return replace(state, phase=Phase.RUNNING, attempt=0), (StartWorkers(0),)
    return _join(state)


def _round_joined(_settings: Settings, state: State, _event: Event, _now: float) -> Result:
    attempt = state.attempt + 1
    return replace(state, phase=Phase.RUNNING, attempt=attempt), (StartWorkers(attempt),)


def _exit_running(settings: Settings, state: State, event: Event, now: float) -> Result:
    assert isinstance(event, Exited)
    if event.attempt != state.attempt:
        return state, ()  # a late exit of an earlier attempt
    if not event.succeeded:
        failing = replace(state, phase=Phase.FAILING, failed=(event.pid,), stop=StopReason.FAILURE)
        return failing, (GatherQueued(event.pid),)
    succeeded = state.succeeded | {event.pid}
    state = replace(state, succeeded=succeeded)
    if len(succeeded) < settings.nproc:
        return state, ()
    return _stop(settings, state, StopReason.SUCCESS, now)


def _exit_failing(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, Exited)
    if event.attempt != state.attempt or event.succeeded or event.pid in state.failed:
        return state, ()
    return replace(state, failed=(*state.failed, event.pid)), ()


def _signal_joining(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, Signalled)
    return _end(replace(state, signum=event.signum), Ending.SIGNALLED)


def _signal_running(settings: Settings, state: State, event: Event, now: float) -> Result:
    assert isinstance(event, Signalled)
    return _stop(settings, replace(state, signum=event.signum), StopReason.SIGNAL, now)


def _signal_failing(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, Signalled)
    if state.signum:
        return state, ()
    return replace(state, signum=event.signum, stop=StopReason.SIGNAL), ()


def _signal_stopping(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    """A first signal into a failure or membership stop ends the job by it, grace kept.

    The workers may be handling that very signal (Slurm's proctrack/linuxproc sends
    scancel's SIGTERM to them too, and one's exit can reach us before our own copy):
    as under torchrun, they keep their grace. A second signal, or one into any other
    stop, cuts the stop short.
    """
    assert isinstance(event, Signalled)
    if not state.signum and state.stop in (StopReason.FAILURE, StopReason.MEMBERSHIP):
        return replace(state, signum=event.signum, stop=StopReason.SIGNAL), ()
    if not state.signum:
        state = replace(state, signum=event.signum, stop=StopReason.SIGNAL)
    return state, (HastenStop(),)


def _signal_waiting(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    """A signal while counting a restart or finishing: stop waiting, end by the signal."""
    assert isinstance(event, Signalled)
    return _end(replace(state, signum=event.signum), Ending.SIGNALLED)


def _notice_running(settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, Noticed)
    if settings.notices_reach_workers:
        return state, (NoteNotice(event.signum),)
    return state, (ForwardNotice(event.signum),)


def _notice_dropped(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, Noticed)
    return state, (DropNotice(event.signum),)


def _membership_running(settings: Settings, state: State, event: Event, now: float) -> Result:
    assert isinstance(event, MembershipChanged)
    return _stop(settings, replace(state, reason=event.reason), StopReason.MEMBERSHIP, now)


def _over(event: Event) -> tuple[StopReason, Ending]:
    if isinstance(event, StoreLost):
        return StopReason.LOST, Ending.LOST
    return StopReason.CLOSED, Ending.CLOSED


def _reason(event: Event) -> str:
    assert isinstance(event, JobClosed | StoreLost)
    return event.reason


def _over_ends(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    """The job is over (closed, or the store lost) while no worker runs: end now."""
    return _end(replace(state, reason=_reason(event)), _over(event)[1])


def _over_running(settings: Settings, state: State, event: Event, now: float) -> Result:
    return _stop(settings, replace(state, reason=_reason(event)), _over(event)[0], now)


def _over_stopping(_settings: Settings, state: State, event: Event, _now: float) -> Result:
    """While a stop is in progress, the job's end outranks a failure or a changed round."""
    if state.stop not in (StopReason.FAILURE, StopReason.MEMBERSHIP):
        return state, ()
    return replace(state, stop=_over(event)[0], reason=_reason(event)), ()


def _gathered(settings: Settings, state: State, _event: Event, now: float) -> Result:
    assert state.stop is not None
    return _stop(settings, state, state.stop, now)


def _stopped(_settings: Settings, state: State, _event: Event, _now: float) -> Result:
    reason = state.stop
    if reason is StopReason.FAILURE:
        return replace(state, phase=Phase.COUNTING), (ReportFailure(state.failed), SpendRestart())
    if reason is StopReason.MEMBERSHIP:
        joined, actions = _join(state)
        return joined, (RestartFree(state.reason), *actions)
    if reason is StopReason.SUCCESS:
        return replace(state, phase=Phase.FINISHING), (Finish(),)
    if reason is StopReason.SIGNAL:
        return _end(state, Ending.SIGNALLED)
    return _end(state, Ending.LOST if reason is StopReason.LOST else Ending.CLOSED)


def _counted(settings: Settings, state: State, event: Event, _now: float) -> Result:
    assert isinstance(event, RestartCounted)
    if event.count > settings.max_restarts:
        return replace(state, phase=Phase.DONE), (GiveUp(),)
    joined, actions = _join(state)
    return joined, (RestartSpent(event.count), *actions)


def _finished(_settings: Settings, state: State, _event: Event, _now: float) -> Result:
    return _end(state, Ending.SUCCEEDED)


_WAITING: dict[type[Event], Handler] = {
    Exited: _stay,  # no worker of the current attempt runs any more
    Signalled: _signal_waiting,
    Noticed: _notice_dropped,
    MembershipChanged: _stay,
}

TRANSITIONS: dict[Phase, dict[type[Event], Handler]] = {
    Phase.INIT: {Begin: _begin},
    Phase.JOINING: {
        RoundJoined: _round_joined,
        Exited: _stay,  # late exits of the stopped attempt
        Signalled: _signal_joining,
        Noticed: _notice_dropped,
        MembershipChanged: _stay,  # the round being formed takes it into account
        JobClosed: _over_ends,
        StoreLost: _over_ends,
    },
    Phase.RUNNING: {
        Exited: _exit_running,
        Signalled: _signal_running,
        Noticed: _notice_running,
        MembershipChanged: _membership_running,
        JobClosed: _over_running,
        StoreLost: _over_running,
    },
    Phase.FAILING: {
        Exited: _exit_failing,
        Signalled: _signal_failing,
        Noticed: _notice_dropped,  # the workers are about to be stopped
        MembershipChanged: _stay,  # the failure restarts anyway
        JobClosed: _over_stopping,
        StoreLost: _over_stopping,
        Gathered: _gathered,
    },
    Phase.STOPPING: {
        Exited: _stay,  # caused by the stop, or late
        Signalled: _signal_stopping,
        Noticed: _notice_dropped,
        MembershipChanged: _stay,
        JobClosed: _over_stopping,
        StoreLost: _over_stopping,
        Stopped: _stopped,
    },
    Phase.COUNTING: {
        **_WAITING,
        JobClosed: _over_ends,
        StoreLost: _over_ends,
        RestartCounted: _counted,
    },
    Phase.FINISHING: {
        **_WAITING,
        JobClosed: _stay,  # success here; the wait itself ends on a close
        StoreLost: _stay,
        Finished: _finished,
    },
    Phase.DONE: {},
}


def step(settings: Settings, state: State, event: Event, now: float) -> Result:
    """The state after ``event`` at monotonic time ``now``, and what to do about it.

    Raises:
        PolicyError: ``event`` is not accepted in ``state.phase``.
    """
    handler = TRANSITIONS[state.phase].get(type(event))
    if handler is None:
        raise PolicyError(f"{type(event).__name__} is not expected while {state.phase.value}")
    return handler(settings, state, event, now)


class Policy:
    """A node's policy state, advanced one event at a time (as h11's ``ConnectionState``)."""

    __slots__ = ("settings", "state")

    def __init__(self, settings: Settings, state: State | None = None) -> None:
        self.settings = settings
        self.state = state or State()

    def handle(self, event: Event, now: float) -> tuple[Action, ...]:
        """Advance by ``event``; on :class:`PolicyError` the state is unchanged."""
        self.state, actions = step(self.settings, self.state, event, now)
        return actions
