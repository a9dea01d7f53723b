"""The agent's decisions as a pure state machine: (state, event, now) -> (state, actions).

Design note: as in h11's ``_state.py``, the policy never sees a process, a store or a
clock. The supervisor (the driver) turns what happens on its loop into the events of
:mod:`rallypoint.agent.policy_messages`, feeds them with the current monotonic time, and
carries out the actions it gets back. Every decision of a node's life lives here: when
to join a round, start, stop or restart the workers; when a restart is spent against the
job-wide budget and when the budget is gone; which exits count (only those of the
current attempt, and only before its stop began: later ones were caused by the stop);
how a handled signal ends the job (forwarded to the workers once they run, the
launcher's own death before); that a notice signal (``--forward-signals``) is passed on
to running workers and changes nothing else; what a change of the rendezvous means.

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

from rallypoint.agent import policy_messages as m
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


@value
class Settings:
    """The configuration the policy decides with."""

    nproc: int  # workers per attempt
    max_restarts: int  # the job-wide budget of failure restarts
    shutdown_grace: float  # seconds a signalled or finished group gets before SIGKILL
    restart_grace: float = RESTART_GRACE  # seconds a failed or changed group gets
    notices_reach_workers: bool = False  # their sender signals every process (proctrack/linuxproc)


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


Result = tuple[State, tuple[m.Action, ...]]
Handler = Callable[[Settings, State, m.Event, float], Result]


def _stay(_settings: Settings, state: State, _event: m.Event, _now: float) -> Result:
    return state, ()


def _join(state: State) -> Result:
    return replace(state, phase=Phase.JOINING, succeeded=frozenset(), failed=(), stop=None), (
        m.JoinRound(),
    )


def _end(state: State, ending: m.Ending) -> Result:
    reason = state.reason if ending in (m.Ending.CLOSED, m.Ending.LOST) else ""
    before = state.attempt < 0 and bool(state.signum)
    action = m.End(ending, reason, state.signum, before_workers=before)
    return replace(state, phase=Phase.DONE), (action,)


def _stop(settings: Settings, state: State, reason: StopReason, now: float) -> Result:
    signum = state.signum if reason is StopReason.SIGNAL else int(signal.SIGTERM)
    short = reason in (StopReason.SUCCESS, StopReason.SIGNAL)
    grace = settings.shutdown_grace if short else settings.restart_grace
    stopping = replace(state, phase=Phase.STOPPING, stop=reason)
    return stopping, (m.StopWorkers(signum, now + grace),)


def _begin(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.Begin)
    if event.prestarted:
        return replace(state, phase=Phase.RUNNING, attempt=0), (m.StartWorkers(0),)
    return _join(state)


def _round_joined(_settings: Settings, state: State, _event: m.Event, _now: float) -> Result:
    attempt = state.attempt + 1
    return replace(state, phase=Phase.RUNNING, attempt=attempt), (m.StartWorkers(attempt),)


def _exit_running(settings: Settings, state: State, event: m.Event, now: float) -> Result:
    assert isinstance(event, m.Exited)
    if event.attempt != state.attempt:
        return state, ()  # a late exit of an earlier attempt
    if not event.succeeded:
        failing = replace(state, phase=Phase.FAILING, failed=(event.pid,), stop=StopReason.FAILURE)
        return failing, (m.GatherQueued(event.pid),)
    succeeded = state.succeeded | {event.pid}
    state = replace(state, succeeded=succeeded)
    if len(succeeded) < settings.nproc:
        return state, ()
    return _stop(settings, state, StopReason.SUCCESS, now)


def _exit_failing(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.Exited)
    if event.attempt != state.attempt or event.succeeded or event.pid in state.failed:
        return state, ()
    return replace(state, failed=(*state.failed, event.pid)), ()


def _signal_joining(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.Signalled)
    return _end(replace(state, signum=event.signum), m.Ending.SIGNALLED)


def _signal_running(settings: Settings, state: State, event: m.Event, now: float) -> Result:
    assert isinstance(event, m.Signalled)
    return _stop(settings, replace(state, signum=event.signum), StopReason.SIGNAL, now)


def _signal_failing(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.Signalled)
    if state.signum:
        return state, ()
    return replace(state, signum=event.signum, stop=StopReason.SIGNAL), ()


def _signal_stopping(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    """A first signal into a failure or membership stop ends the job by it, grace kept.

    The workers may be handling that very signal (Slurm's proctrack/linuxproc sends
    scancel's SIGTERM to them too, and one's exit can reach us before our own copy):
    as under torchrun, they keep their grace. A second signal, or one into any other
    stop, cuts the stop short.
    """
    assert isinstance(event, m.Signalled)
    if not state.signum and state.stop in (StopReason.FAILURE, StopReason.MEMBERSHIP):
        return replace(state, signum=event.signum, stop=StopReason.SIGNAL), ()
    if not state.signum:
        state = replace(state, signum=event.signum, stop=StopReason.SIGNAL)
    return state, (m.HastenStop(),)


def _signal_waiting(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    """A signal while counting a restart or finishing: stop waiting, end by the signal."""
    assert isinstance(event, m.Signalled)
    return _end(replace(state, signum=event.signum), m.Ending.SIGNALLED)


def _notice_running(settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.Noticed)
    if settings.notices_reach_workers:
        return state, (m.NoteNotice(event.signum),)
    return state, (m.ForwardNotice(event.signum),)


def _notice_dropped(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.Noticed)
    return state, (m.DropNotice(event.signum),)


def _membership_running(settings: Settings, state: State, event: m.Event, now: float) -> Result:
    assert isinstance(event, m.MembershipChanged)
    return _stop(settings, replace(state, reason=event.reason), StopReason.MEMBERSHIP, now)


def _over(event: m.Event) -> tuple[StopReason, m.Ending]:
    if isinstance(event, m.StoreLost):
        return StopReason.LOST, m.Ending.LOST
    return StopReason.CLOSED, m.Ending.CLOSED


def _reason(event: m.Event) -> str:
    assert isinstance(event, m.JobClosed | m.StoreLost)
    return event.reason


def _over_ends(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    """The job is over (closed, or the store lost) while no worker runs: end now."""
    return _end(replace(state, reason=_reason(event)), _over(event)[1])


def _over_running(settings: Settings, state: State, event: m.Event, now: float) -> Result:
    return _stop(settings, replace(state, reason=_reason(event)), _over(event)[0], now)


def _over_stopping(_settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    """While a stop is in progress, the job's end outranks a failure or a changed round."""
    if state.stop not in (StopReason.FAILURE, StopReason.MEMBERSHIP):
        return state, ()
    return replace(state, stop=_over(event)[0], reason=_reason(event)), ()


def _gathered(settings: Settings, state: State, _event: m.Event, now: float) -> Result:
    assert state.stop is not None
    return _stop(settings, state, state.stop, now)


def _stopped(_settings: Settings, state: State, _event: m.Event, _now: float) -> Result:
    reason = state.stop
    if reason is StopReason.FAILURE:
        return replace(state, phase=Phase.COUNTING), (
            m.ReportFailure(state.failed),
            m.SpendRestart(),
        )
    if reason is StopReason.MEMBERSHIP:
        joined, actions = _join(state)
        return joined, (m.RestartFree(state.reason), *actions)
    if reason is StopReason.SUCCESS:
        return replace(state, phase=Phase.FINISHING), (m.Finish(),)
    if reason is StopReason.SIGNAL:
        return _end(state, m.Ending.SIGNALLED)
    return _end(state, m.Ending.LOST if reason is StopReason.LOST else m.Ending.CLOSED)


def _counted(settings: Settings, state: State, event: m.Event, _now: float) -> Result:
    assert isinstance(event, m.RestartCounted)
    if event.count > settings.max_restarts:
        return replace(state, phase=Phase.DONE), (m.GiveUp(),)
    joined, actions = _join(state)
    return joined, (m.RestartSpent(event.count), *actions)


def _finished(_settings: Settings, state: State, _event: m.Event, _now: float) -> Result:
    return _end(state, m.Ending.SUCCEEDED)


_WAITING: dict[type[m.Event], Handler] = {
    m.Exited: _stay,  # no worker of the current attempt runs any more
    m.Signalled: _signal_waiting,
    m.Noticed: _notice_dropped,
    m.MembershipChanged: _stay,
}

TRANSITIONS: dict[Phase, dict[type[m.Event], Handler]] = {
    Phase.INIT: {m.Begin: _begin},
    Phase.JOINING: {
        m.RoundJoined: _round_joined,
        m.Exited: _stay,  # late exits of the stopped attempt
        m.Signalled: _signal_joining,
        m.Noticed: _notice_dropped,
        m.MembershipChanged: _stay,  # the round being formed takes it into account
        m.JobClosed: _over_ends,
        m.StoreLost: _over_ends,
    },
    Phase.RUNNING: {
        m.Exited: _exit_running,
        m.Signalled: _signal_running,
        m.Noticed: _notice_running,
        m.MembershipChanged: _membership_running,
        m.JobClosed: _over_running,
        m.StoreLost: _over_running,
    },
    Phase.FAILING: {
        m.Exited: _exit_failing,
        m.Signalled: _signal_failing,
        m.Noticed: _notice_dropped,  # the workers are about to be stopped
        m.MembershipChanged: _stay,  # the failure restarts anyway
        m.JobClosed: _over_stopping,
        m.StoreLost: _over_stopping,
        m.Gathered: _gathered,
    },
    Phase.STOPPING: {
        m.Exited: _stay,  # caused by the stop, or late
        m.Signalled: _signal_stopping,
        m.Noticed: _notice_dropped,
        m.MembershipChanged: _stay,
        m.JobClosed: _over_stopping,
        m.StoreLost: _over_stopping,
        m.Stopped: _stopped,
    },
    Phase.COUNTING: {
        **_WAITING,
        m.JobClosed: _over_ends,
        m.StoreLost: _over_ends,
        m.RestartCounted: _counted,
    },
    Phase.FINISHING: {
        **_WAITING,
        m.JobClosed: _stay,  # success here; the wait itself ends on a close
        m.StoreLost: _stay,
        m.Finished: _finished,
    },
    Phase.DONE: {},
}


def step(settings: Settings, state: State, event: m.Event, now: float) -> Result:
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

    def handle(self, event: m.Event, now: float) -> tuple[m.Action, ...]:
        """Advance by ``event``; on :class:`PolicyError` the state is unchanged."""
        self.state, actions = step(self.settings, self.state, event, now)
        return actions
