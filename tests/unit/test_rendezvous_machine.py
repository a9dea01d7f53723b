"""The pure rendezvous machine: decisions, ranks, and invariants over random histories."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rallypoint.rendezvous.machine import (
    Change,
    Settings,
    Step,
    View,
    assignments,
    decide_round,
    decide_running,
    header_of,
    result_from,
)
from rallypoint.rendezvous.records import (
    NodeRecord,
    RoundRecord,
    decode_round,
    encode_round,
)

DYNAMIC = Settings(min_nodes=2, max_nodes=3, last_call_timeout=30.0)


def node(name: str, nproc: int = 1, role: str = "default", rank: int = -1) -> NodeRecord:
    return NodeRecord(name, f"10.0.0.{name[-1]}", 100, nproc, role, 4000, rank)


def view(
    nodes: list[NodeRecord],
    joins: dict[str, int],
    last: RoundRecord | None = None,
) -> View:
    return View({n.node_id: n for n in nodes}, joins, last)


def test_round_completes_at_once_when_max_nodes_joined() -> None:
    nodes = [node("n3"), node("n1"), node("n2")]
    decision = decide_round(view(nodes, {"n1": 0, "n2": 0, "n3": 0}), 0, DYNAMIC, None, 0.0)
    assert decision.step is Step.COMPLETE
    assert decision.record is not None
    assert [m.node_id for m in decision.record.members] == ["n1", "n2", "n3"]


def test_min_nodes_wait_for_the_last_call_then_complete() -> None:
    nodes = [node("n1"), node("n2")]
    state = view(nodes, {"n1": 0, "n2": 0})
    waiting = decide_round(state, 0, DYNAMIC, 100.0, 110.0)
    assert waiting.step is Step.WAIT
    assert waiting.deadline == 130.0
    assert decide_round(state, 0, DYNAMIC, 100.0, 130.0).step is Step.COMPLETE


def test_below_min_waits_without_deadline() -> None:
    decision = decide_round(view([node("n1")], {"n1": 0}), 0, DYNAMIC, None, 5.0)
    assert (decision.step, decision.deadline) == (Step.WAIT, None)


def test_later_round_completes_once_every_live_node_joined() -> None:
    nodes = [node("n1"), node("n2")]
    last = RoundRecord(0, (nodes[1], nodes[0], node("n3")), 0)
    decision = decide_round(view(nodes, {"n1": 1, "n2": 1}, last), 1, DYNAMIC, 50.0, 50.0)
    assert decision.step is Step.COMPLETE
    assert decision.record is not None
    assert [m.node_id for m in decision.record.members] == ["n2", "n1"]  # ranks kept


def test_counts_kept_by_the_caller_are_used() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    state = View({n.node_id: n for n in nodes}, {"n1": 0, "n2": 0, "n3": 0}, counts={0: 1})
    assert decide_round(state, 0, DYNAMIC, None, 0.0).step is Step.WAIT


def test_static_needs_every_node_rank_and_orders_by_it() -> None:
    static = Settings(2, 2, 30.0, static=True)
    nodes = [node("n1", rank=1), node("n2", rank=0)]
    assert decide_round(view(nodes[:1], {"n1": 0}), 0, static, 0.0, 99.0).step is Step.WAIT
    done = decide_round(view(nodes, {"n1": 0, "n2": 0}), 0, static, None, 0.0)
    assert done.record is not None
    assert [m.node_id for m in done.record.members] == ["n2", "n1"]
    twice = [node("n1", rank=0), node("n2", rank=0)]
    assert decide_round(view(twice, {"n1": 0, "n2": 0}), 0, static, None, 0.0).step is Step.WAIT


def test_running_decisions() -> None:
    current = RoundRecord(0, (node("n1"), node("n2")), 0)
    alive = [node("n1"), node("n2")]
    assert decide_running(view(alive, {"n1": 0, "n2": 0}), current, DYNAMIC).change is Change.KEEP
    left = decide_running(view(alive[:1], {"n1": 0}), current, DYNAMIC)
    assert (left.change, left.reason) == (Change.RESTART, "node n2 left the job")
    waiting = decide_running(view([*alive, node("n3")], {"n3": 1}), current, DYNAMIC)
    assert waiting.change is Change.RESTART
    full = RoundRecord(0, (node("n1"), node("n2"), node("n3")), 0)
    extra = [*alive, node("n3"), node("n4")]
    assert decide_running(view(extra, {"n4": 1}), full, DYNAMIC).change is Change.KEEP
    failing = decide_running(view(alive, {"n1": 1, "n2": 0}), current, DYNAMIC)
    assert failing.reason == "node n1 is restarting its workers"


def test_heterogeneous_roles_match_torchruns_worked_example() -> None:
    layout = [("ps", 4), ("trainer", 1), ("trainer", 2), ("trainer", 3), ("ps", 5)]
    members = tuple(node(f"n{i}", nproc, role) for i, (role, nproc) in enumerate(layout))
    record = RoundRecord(0, members, 0)
    placed = assignments(record)
    places = [result_from(header_of(record), placed[f"n{i}"]) for i in range(5)]
    assert [p.base_rank for p in places] == [0, 4, 5, 7, 10]
    assert {p.world_size for p in places} == {15}
    assert [p.base_role_rank for p in places] == [0, 0, 1, 3, 4]
    assert [p.role_world_size for p in places] == [9, 6, 6, 6, 9]
    assert decode_round(encode_round(record)) == record


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=40),
    st.integers(1, 3),
    st.integers(0, 2),
)
def test_random_histories_keep_the_invariants(
    steps: list[tuple[bool, int]], low: int, extra: int
) -> None:
    """Nodes join and leave at random; every completed round is valid and rounds only grow."""
    rules = Settings(low, low + extra, last_call_timeout=1.0)
    alive: dict[str, NodeRecord] = {}
    joins: dict[str, int] = {}
    last: RoundRecord | None = None
    now = 0.0
    for join, index in steps:
        name = f"n{index}"
        now += 0.7
        if join:
            alive[name] = node(name)
            joins[name] = 0 if last is None else last.round + 1
        else:
            alive.pop(name, None)
            joins.pop(name, None)
        target = 0 if last is None else last.round + 1
        joins = {n: max(r, target) for n, r in joins.items()}  # late nodes aim at the next round
        for _ in range(2):
            decision = decide_round(View(alive, joins, last), target, rules, now - 1, now)
            if decision.step is Step.COMPLETE and decision.record is not None:
                record = decision.record
                assert last is None or record.round == last.round + 1
                assert rules.min_nodes <= len(record.members) <= rules.max_nodes
                ids = [m.node_id for m in record.members]
                assert len(set(ids)) == len(ids)
                assert all(i in alive for i in ids)
                if last is not None:  # survivors keep their relative order
                    before = [m.node_id for m in last.members if m.node_id in ids]
                    assert [i for i in ids if i in before] == before
                last = record
                target = record.round + 1
