"""The rendezvous protocol as pure decisions over a snapshot of the store.

Design note: torchrun keeps one pickled state blob that every node rewrites
(quadratic traffic, and code execution for whoever can write the key). Here
each node writes only its own leased records (``node/<id>``, ``join/<id>``);
a round is completed by one compare-and-set of the ``round`` key, which any
node may attempt and exactly one wins. This module decides, from a
:class:`View` of the store and the time, what one node should do; it never
touches a socket or reads the clock, so tests drive it with plain values.

Semantics kept from torchrun (contract §4.2): a round completes at once when
MAX nodes have joined, or ``last_call_timeout`` after MIN have; a node that
arrives when a round is complete waits for the next one, which makes the
members restart (a free restart) while the round has room; ranks of a first
round follow the sorted (address, pid, id) order. Beyond torchrun: after the
first round, once every live node has joined, the round completes without
waiting for the last call (there is nobody else to wait for); group ranks of
surviving members are kept; a dead node is gone the moment its lease ends.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from rallypoint.rendezvous.records import ClosedRecord, NodeRecord, RoundRecord
from rallypoint.rendezvous.result import RendezvousResult


@dataclass(frozen=True, slots=True)
class Settings:
    """The rendezvous settings that shape decisions."""

    min_nodes: int
    max_nodes: int
    last_call_timeout: float
    static: bool = False  # ranks come from --node-rank; all max_nodes must join


@dataclass(frozen=True, slots=True)
class View:
    """What one node knows of the store at one moment."""

    nodes: Mapping[str, NodeRecord]  # live nodes (their lease holds)
    joins: Mapping[str, int]  # live node id -> the round it wants next
    last_round: RoundRecord | None = None
    closed: ClosedRecord | None = None
    restarts: int = 0

    def joined(self, target: int) -> list[NodeRecord]:
        """Live nodes waiting for round ``target``."""
        return [self.nodes[n] for n, r in self.joins.items() if r == target and n in self.nodes]


class Step(enum.Enum):
    """What a joining node should do next."""

    WAIT = "wait"  # for a change in the store, or until ``deadline``
    COMPLETE = "complete"  # try to write ``record`` with compare-and-set
    JOINED = "joined"  # ``record`` is the round this node is in
    RETARGET = "retarget"  # the round filled without us: join ``target``
    CLOSED = "closed"  # the job is over


@dataclass(frozen=True, slots=True)
class JoinDecision:
    """One step of joining."""

    step: Step
    record: RoundRecord | None = None
    deadline: float | None = None
    target: int = 0


def next_target(view: View) -> int:
    """The round a node joining now should ask for."""
    return 0 if view.last_round is None else view.last_round.round + 1


def _ordered(
    candidates: list[NodeRecord], previous: RoundRecord | None, settings: Settings
) -> tuple[NodeRecord, ...]:
    if settings.static:
        return tuple(sorted(candidates, key=lambda n: n.node_rank))
    before = {m.node_id: rank for rank, m in enumerate(previous.members)} if previous else {}
    kept = sorted((n for n in candidates if n.node_id in before), key=lambda n: before[n.node_id])
    new = sorted((n for n in candidates if n.node_id not in before), key=lambda n: n.sort_key)
    return tuple(kept + new)


def _record(
    view: View, target: int, candidates: list[NodeRecord], settings: Settings
) -> RoundRecord:
    members = _ordered(candidates, view.last_round, settings)[: settings.max_nodes]
    return RoundRecord(target, members, view.restarts)


def _static_ready(candidates: list[NodeRecord], settings: Settings) -> bool:
    ranks = sorted(n.node_rank for n in candidates)
    return ranks == list(range(settings.max_nodes))


def decide_join(
    view: View, me: str, target: int, settings: Settings, min_reached_at: float | None, now: float
) -> JoinDecision:
    """Decide the next step of node ``me`` joining round ``target``.

    Args:
        view: the store as this node last saw it.
        me: this node's id.
        target: the round this node asked to join.
        settings: MIN/MAX, last call, static or not.
        min_reached_at: when this node first saw MIN nodes joined for ``target``.
        now: the current monotonic time.
    """
    if view.closed is not None:
        return JoinDecision(Step.CLOSED)
    last = view.last_round
    if last is not None and last.round >= target:
        if last.round == target and last.rank_of(me) is not None:
            return JoinDecision(Step.JOINED, record=last)
        return JoinDecision(Step.RETARGET, target=last.round + 1)
    candidates = view.joined(target)
    if settings.static:
        ready = _static_ready(candidates, settings)
        return JoinDecision(
            Step.COMPLETE if ready else Step.WAIT,
            record=_record(view, target, candidates, settings) if ready else None,
        )
    return _dynamic(view, target, candidates, settings, min_reached_at, now)


def _dynamic(
    view: View,
    target: int,
    candidates: list[NodeRecord],
    settings: Settings,
    min_reached_at: float | None,
    now: float,
) -> JoinDecision:
    count = len(candidates)
    if count < settings.min_nodes:
        return JoinDecision(Step.WAIT)
    everyone = view.last_round is not None and count == len(view.nodes)
    deadline = (min_reached_at if min_reached_at is not None else now) + settings.last_call_timeout
    if count >= settings.max_nodes or everyone or now >= deadline:
        return JoinDecision(Step.COMPLETE, record=_record(view, target, candidates, settings))
    return JoinDecision(Step.WAIT, deadline=deadline)


class Change(enum.Enum):
    """What a running node should do about the store's state."""

    KEEP = "keep"
    RESTART = "restart"  # a free restart: membership changed or a peer is restarting
    CLOSED = "closed"  # the job is over elsewhere


@dataclass(frozen=True, slots=True)
class RunningDecision:
    """What to do while this node's workers run, and why."""

    change: Change
    reason: str = ""


def decide_running(view: View, current: RoundRecord, settings: Settings) -> RunningDecision:
    """Decide whether the workers of round ``current`` may keep running."""
    if view.closed is not None:
        return RunningDecision(Change.CLOSED, view.closed.message or view.closed.reason)
    for member in current.members:
        if member.node_id not in view.nodes:
            return RunningDecision(Change.RESTART, f"node {member.node_id} left the job")
    members = {m.node_id for m in current.members}
    for node_id, wanted in view.joins.items():
        if wanted <= current.round or node_id not in view.nodes:
            continue
        if node_id in members:
            return RunningDecision(Change.RESTART, f"node {node_id} is restarting its workers")
        if len(members) < settings.max_nodes and not settings.static:
            return RunningDecision(Change.RESTART, f"node {node_id} is waiting to join")
    return RunningDecision(Change.KEEP)


def done_round(view_done: Mapping[str, bool], current: RoundRecord) -> bool:
    """True when every member of ``current`` reported its workers succeeded."""
    return all(view_done.get(m.node_id, False) for m in current.members)


def place_in(record: RoundRecord, node_id: str, master_addr: str | None = None) -> RendezvousResult:
    """This node's ranks in a completed round (contract §3.2: blocks in group-rank order).

    Args:
        record: the completed round.
        node_id: this node.
        master_addr: overrides the rank-0 node's address (static: ``--master-addr``).
    """
    rank = record.rank_of(node_id)
    if rank is None:
        raise ValueError(f"{node_id} is not a member of round {record.round}")
    me = record.members[rank]
    before = record.members[:rank]
    same_role = [m for m in record.members if m.role == me.role]
    return RendezvousResult(
        round=record.round,
        group_rank=rank,
        group_world_size=len(record.members),
        base_rank=sum(m.nproc for m in before),
        world_size=sum(m.nproc for m in record.members),
        base_role_rank=sum(m.nproc for m in before if m.role == me.role),
        role_world_size=sum(m.nproc for m in same_role),
        master_addr=master_addr or record.master.addr,
        master_port=record.master.port,
        restarts=record.restarts,
    )
