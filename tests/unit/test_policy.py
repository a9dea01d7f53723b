"""The agent's policy table: every (phase, event) pair, and the histories that bite."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rallypoint.agent.policy import (
    TRANSITIONS,
    Phase,
    Policy,
    PolicyError,
    Settings,
    State,
    StopReason,
    step,
)
from rallypoint.agent.policy_messages import (
    EVENT_TYPES,
    Action,
    Begin,
    DropNotice,
    End,
    Ending,
    Event,
    Exited,
    Finish,
    Finished,
    ForwardNotice,
    Gathered,
    GatherQueued,
    GiveUp,
    HastenStop,
    JobClosed,
    JoinRound,
    MembershipChanged,
    NoteNotice,
    Noticed,
    ReportFailure,
    RestartCounted,
    RestartFree,
    RestartSpent,
    RoundJoined,
    Signalled,
    SpendRestart,
    StartWorkers,
    Stopped,
    StopWorkers,
    StoreLost,
)

SETTINGS = Settings(nproc=2, max_restarts=1, shutdown_grace=5.0, restart_grace=30.0)
TERM = int(signal.SIGTERM)
USR1 = int(signal.SIGUSR1)
NOW = 100.0


def run(events: list[Event], policy: Policy | None = None) -> tuple[Policy, list[Action]]:
    """Feed ``events`` in order; return the policy and every action, flattened."""
    policy = policy or Policy(SETTINGS)
    actions: list[Action] = []
    for event in events:
        actions.extend(policy.handle(event, NOW))
    return policy, actions


RUNNING: list[Event] = [Begin(), RoundJoined()]
FAILING: list[Event] = [*RUNNING, Exited(0, 11, False)]
HISTORIES: dict[Phase, list[Event]] = {
    Phase.INIT: [],
    Phase.JOINING: [Begin()],
    Phase.RUNNING: RUNNING,
    Phase.FAILING: FAILING,
    Phase.STOPPING: [*RUNNING, MembershipChanged("node b left the job")],
    Phase.COUNTING: [*FAILING, Gathered(), Stopped()],
    Phase.FINISHING: [*RUNNING, Exited(0, 11, True), Exited(0, 12, True), Stopped()],
    Phase.DONE: [*RUNNING, Exited(0, 11, True), Exited(0, 12, True), Stopped(), Finished()],
}
SAMPLES: dict[type[Event], Event] = {
    Begin: Begin(),
    RoundJoined: RoundJoined(),
    Exited: Exited(0, 12, False),
    Signalled: Signalled(TERM),
    Noticed: Noticed(USR1),
    MembershipChanged: MembershipChanged("node c is waiting to join"),
    JobClosed: JobClosed("the job failed on node b"),
    StoreLost: StoreLost("lease could not be renewed"),
    Gathered: Gathered(),
    Stopped: Stopped(),
    RestartCounted: RestartCounted(1),
    Finished: Finished(),
}
ILLEGAL = None
J, R, F, S, C, FI, D = (
    Phase.JOINING,
    Phase.RUNNING,
    Phase.FAILING,
    Phase.STOPPING,
    Phase.COUNTING,
    Phase.FINISHING,
    Phase.DONE,
)
# (phase, event type) -> (phase after, types of the actions), for the samples above.
EXPECTED: dict[tuple[Phase, type[Event]], tuple[Phase, tuple[type[Action], ...]] | None] = {
    (Phase.INIT, Begin): (J, (JoinRound,)),
    (J, RoundJoined): (R, (StartWorkers,)),
    (J, Exited): (J, ()),
    (J, Signalled): (D, (End,)),
    (J, Noticed): (J, (DropNotice,)),
    (J, MembershipChanged): (J, ()),
    (J, JobClosed): (D, (End,)),
    (J, StoreLost): (D, (End,)),
    (R, Exited): (F, (GatherQueued,)),
    (R, Signalled): (S, (StopWorkers,)),
    (R, Noticed): (R, (ForwardNotice,)),
    (R, MembershipChanged): (S, (StopWorkers,)),
    (R, JobClosed): (S, (StopWorkers,)),
    (R, StoreLost): (S, (StopWorkers,)),
    (F, Exited): (F, ()),
    (F, Signalled): (F, ()),
    (F, Noticed): (F, (DropNotice,)),
    (F, MembershipChanged): (F, ()),
    (F, JobClosed): (F, ()),
    (F, StoreLost): (F, ()),
    (F, Gathered): (S, (StopWorkers,)),
    (S, Exited): (S, ()),
    (S, Signalled): (S, ()),  # a membership stop: the signal's now, grace kept
    (S, Noticed): (S, (DropNotice,)),
    (S, MembershipChanged): (S, ()),
    (S, JobClosed): (S, ()),
    (S, StoreLost): (S, ()),
    (S, Stopped): (J, (RestartFree, JoinRound)),
    (C, Exited): (C, ()),
    (C, Signalled): (D, (End,)),
    (C, Noticed): (C, (DropNotice,)),
    (C, MembershipChanged): (C, ()),
    (C, JobClosed): (D, (End,)),
    (C, StoreLost): (D, (End,)),
    (C, RestartCounted): (J, (RestartSpent, JoinRound)),
    (FI, Exited): (FI, ()),
    (FI, Signalled): (D, (End,)),
    (FI, Noticed): (FI, (DropNotice,)),
    (FI, MembershipChanged): (FI, ()),
    (FI, JobClosed): (FI, ()),
    (FI, StoreLost): (FI, ()),
    (FI, Finished): (D, (End,)),
}
PAIRS = [(phase, kind) for phase in Phase for kind in EVENT_TYPES]


def state_in(phase: Phase) -> State:
    policy, _ = run(HISTORIES[phase])
    assert policy.state.phase is phase
    return policy.state


@pytest.mark.parametrize(("phase", "kind"), PAIRS, ids=[f"{p.name}-{k.__name__}" for p, k in PAIRS])
def test_every_phase_and_event(phase: Phase, kind: type[Event]) -> None:
    before = state_in(phase)
    policy = Policy(SETTINGS, before)
    expected = EXPECTED.get((phase, kind), ILLEGAL)
    if expected is ILLEGAL:
        with pytest.raises(PolicyError, match=kind.__name__):
            policy.handle(SAMPLES[kind], NOW)
        assert policy.state is before  # unchanged, as in h11
        return
    actions = policy.handle(SAMPLES[kind], NOW)
    assert (policy.state.phase, tuple(type(a) for a in actions)) == expected


def test_the_table_lists_only_known_phases_and_events() -> None:
    assert set(TRANSITIONS) == set(Phase)
    listed = {(p, k) for p, row in TRANSITIONS.items() for k in row}
    assert listed == set(EXPECTED)


def test_a_prestarted_node_runs_attempt_zero_at_once() -> None:
    policy, actions = run([Begin(prestarted=True)])
    assert actions == [StartWorkers(0)]
    assert policy.state.phase is Phase.RUNNING


def test_success_stops_leftovers_then_finishes() -> None:
    policy, actions = run([*RUNNING, Exited(0, 11, True), Exited(0, 12, True), Stopped()])
    assert actions == [JoinRound(), StartWorkers(0), StopWorkers(TERM, NOW + 5.0), Finish()]
    assert policy.handle(Finished(), NOW) == (End(Ending.SUCCEEDED),)


def test_queued_failures_count_and_exits_after_the_stop_do_not() -> None:
    """Exits gathered before the stop are failures; those after it were caused by it."""
    _, actions = run(
        [*FAILING, Exited(0, 12, False), Gathered(), Exited(0, 13, False), Stopped()],
        Policy(Settings(nproc=3, max_restarts=1, shutdown_grace=5.0)),
    )
    assert actions[2:] == [
        GatherQueued(11),
        StopWorkers(TERM, NOW + 30.0),
        ReportFailure((11, 12)),
        SpendRestart(),
    ]


def test_a_failure_while_a_stop_is_in_progress_spends_nothing() -> None:
    stopping = HISTORIES[Phase.STOPPING]
    policy, actions = run([*stopping, Exited(0, 11, False), Exited(0, 12, False), Stopped()])
    assert actions[-2:] == [RestartFree("node b left the job"), JoinRound()]
    assert not [a for a in actions if isinstance(a, SpendRestart | ReportFailure)]
    assert policy.state.failed == ()


def test_a_signal_during_rendezvous_ends_the_launcher_by_it() -> None:
    _, actions = run([Begin(), Signalled(int(signal.SIGINT))])
    assert actions[-1] == End(Ending.SIGNALLED, signum=int(signal.SIGINT), before_workers=True)


def test_a_signal_while_rejoining_after_a_restart_is_after_workers() -> None:
    _, actions = run([*HISTORIES[Phase.COUNTING], RestartCounted(1), Signalled(TERM)])
    assert actions[-1] == End(Ending.SIGNALLED, signum=TERM, before_workers=False)


def test_a_signal_is_forwarded_to_the_workers() -> None:
    policy, actions = run([*RUNNING, Signalled(int(signal.SIGHUP))])
    assert actions[-1] == StopWorkers(int(signal.SIGHUP), NOW + 5.0)
    assert policy.handle(Stopped(), NOW) == (End(Ending.SIGNALLED, signum=int(signal.SIGHUP)),)


def test_a_notice_reaches_the_running_workers_and_the_job_goes_on() -> None:
    policy, actions = run([*RUNNING, Noticed(USR1), Noticed(USR1)])
    assert actions[-2:] == [ForwardNotice(USR1), ForwardNotice(USR1)]
    assert (policy.state.phase, policy.state.signum, policy.state.stop) == (R, 0, None)
    _, actions = run([Exited(0, 11, True), Exited(0, 12, True), Stopped(), Finished()], policy)
    assert actions[-1] == End(Ending.SUCCEEDED)


def test_a_notice_its_sender_gave_every_worker_is_only_noted() -> None:
    settings = Settings(nproc=2, max_restarts=1, shutdown_grace=5.0, notices_reach_workers=True)
    policy, actions = run([*RUNNING, Noticed(USR1)], Policy(settings))
    assert actions[-1] == NoteNotice(USR1)
    assert policy.state.phase is R


def test_a_notice_then_a_stop_signal_ends_by_the_stop_signal() -> None:
    _, actions = run([*RUNNING, Noticed(USR1), Signalled(TERM), Noticed(USR1), Stopped()])
    assert actions[-4:] == [
        ForwardNotice(USR1),
        StopWorkers(TERM, NOW + 5.0),
        DropNotice(USR1),
        End(Ending.SIGNALLED, signum=TERM),
    ]


def test_a_notice_before_any_worker_is_dropped_not_a_stop() -> None:
    policy, actions = run([Begin(), Noticed(USR1), RoundJoined()])
    assert actions == [JoinRound(), DropNotice(USR1), StartWorkers(0)]
    assert policy.state.signum == 0


def test_a_second_signal_hastens_the_stop_and_the_first_one_counts() -> None:
    _, actions = run([*RUNNING, Signalled(TERM), Signalled(int(signal.SIGINT)), Stopped()])
    assert actions[-2:] == [HastenStop(), End(Ending.SIGNALLED, signum=TERM)]


def test_a_signal_while_gathering_failures_is_forwarded_and_spends_nothing() -> None:
    _, actions = run([*FAILING, Signalled(int(signal.SIGINT)), Gathered(), Stopped()])
    assert actions[-2:] == [
        StopWorkers(int(signal.SIGINT), NOW + 5.0),
        End(Ending.SIGNALLED, signum=int(signal.SIGINT)),
    ]


def test_a_signal_during_a_restart_stop_keeps_the_grace_and_ends_the_job() -> None:
    """The workers may be handling the same signal (Slurm's linuxproc): no early SIGKILL."""
    _, actions = run([*FAILING, Gathered(), Signalled(TERM), Stopped()])
    assert actions[-2:] == [StopWorkers(TERM, NOW + 30.0), End(Ending.SIGNALLED, signum=TERM)]


def test_a_second_signal_during_a_restart_stop_hastens_it() -> None:
    _, actions = run([*FAILING, Gathered(), Signalled(TERM), Signalled(TERM), Stopped()])
    assert actions[-2:] == [HastenStop(), End(Ending.SIGNALLED, signum=TERM)]


def test_a_membership_change_during_a_restart_changes_nothing() -> None:
    change = MembershipChanged("node c is waiting to join")
    policy, actions = run(
        [*FAILING, change, Gathered(), change, Stopped(), change, RestartCounted(1), change]
    )
    assert [a for a in actions if isinstance(a, RestartFree)] == []
    assert actions.count(SpendRestart()) == 1
    assert RestartSpent(1) in actions
    assert policy.state.phase is Phase.JOINING


def test_an_exit_from_a_previous_attempt_arriving_late_is_ignored() -> None:
    restarted = [*HISTORIES[Phase.COUNTING], RestartCounted(1), RoundJoined()]
    policy, _ = run([*restarted, Exited(0, 12, False)])
    assert policy.state.phase is Phase.RUNNING
    assert policy.state.attempt == 1
    _, actions = run([Exited(1, 21, True), Exited(0, 11, True), Exited(1, 22, True)], policy)
    assert actions == [StopWorkers(TERM, NOW + 5.0)]


def test_the_restart_budget_reached_on_two_nodes_at_once() -> None:
    """Both nodes count at once; the store's add gives each its own count."""
    first, second = Policy(SETTINGS), Policy(SETTINGS)
    run(HISTORIES[Phase.COUNTING], first)
    run(HISTORIES[Phase.COUNTING], second)
    assert first.handle(RestartCounted(2), NOW) == (GiveUp(),)
    assert second.handle(RestartCounted(3), NOW) == (GiveUp(),)
    assert first.state.phase is second.state.phase is Phase.DONE


def test_the_last_restart_goes_to_one_node_and_the_other_gives_up() -> None:
    lucky, other = Policy(SETTINGS), Policy(SETTINGS)
    run(HISTORIES[Phase.COUNTING], lucky)
    run(HISTORIES[Phase.COUNTING], other)
    assert lucky.handle(RestartCounted(1), NOW) == (RestartSpent(1), JoinRound())
    assert other.handle(RestartCounted(2), NOW) == (GiveUp(),)
    closed = lucky.handle(JobClosed("the job failed on node b"), NOW)
    assert closed == (End(Ending.CLOSED, "the job failed on node b"),)


@pytest.mark.parametrize(
    ("event", "ending"),
    [(JobClosed("the job failed on node b"), Ending.CLOSED), (StoreLost("gone"), Ending.LOST)],
)
def test_the_job_ending_elsewhere_outranks_a_failure(event: Event, ending: Ending) -> None:
    policy, actions = run([*FAILING, event, Gathered(), Stopped()])
    assert policy.state.stop in (StopReason.CLOSED, StopReason.LOST)
    assert actions[-1] == End(ending, policy.state.reason)
    assert SpendRestart() not in actions


def test_a_lost_store_while_running_stops_the_workers_and_says_lost() -> None:
    _, actions = run([*RUNNING, StoreLost("lease could not be renewed"), Stopped()])
    assert actions[-2:] == [
        StopWorkers(TERM, NOW + 30.0),
        End(Ending.LOST, "lease could not be renewed"),
    ]


def test_a_signal_during_a_success_stop_ends_by_the_signal() -> None:
    _, actions = run([*RUNNING, Exited(0, 11, True), Exited(0, 12, True), Signalled(TERM)])
    assert actions[-1] == HastenStop()


def test_step_is_pure() -> None:
    state = state_in(Phase.RUNNING)
    first = step(SETTINGS, state, Exited(0, 11, False), NOW)
    assert step(SETTINGS, state, Exited(0, 11, False), NOW) == first
    assert state.phase is Phase.RUNNING


EVENTS = st.one_of(
    st.just(Begin()),
    st.builds(Begin, st.booleans()),
    st.just(RoundJoined()),
    st.builds(Exited, st.integers(-1, 3), st.integers(1, 4), st.booleans()),
    st.builds(Signalled, st.sampled_from([TERM, int(signal.SIGINT)])),
    st.just(Noticed(USR1)),
    st.just(MembershipChanged("m")),
    st.just(JobClosed("c")),
    st.just(StoreLost("l")),
    st.just(Gathered()),
    st.just(Stopped()),
    st.builds(RestartCounted, st.integers(0, 3)),
    st.just(Finished()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=40))
def test_random_histories_keep_the_invariants(events: list[Event]) -> None:
    """Illegal events leave the state alone; attempts only grow; End comes once, last."""
    policy = Policy(SETTINGS)
    ends = 0
    for event in events:
        before = policy.state
        try:
            actions = policy.handle(event, NOW)
        except PolicyError:
            assert policy.state is before
            continue
        assert policy.state.attempt >= before.attempt
        ends += sum(isinstance(a, End | GiveUp) for a in actions)
        assert (policy.state.phase is Phase.DONE) == (ends == 1)
