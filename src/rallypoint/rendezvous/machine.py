"""The rendezvous protocol as pure decisions over a snapshot of the store.

Design note: torchrun keeps one pickled state blob that every node rewrites
(quadratic traffic, and code execution for whoever can write the key). Here
each node writes only its own leased ``join/<id>`` record (who it is and the
round it wants); the one coordinator (elected through a leased key, see
``coordinator.py``) completes a round by writing the assignments and then the
small ``job/round`` header. This module decides, from a
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

from rallypoint.rendezvous.records import (
    Assignment,
    NodeRecord,
    RoundHeader,
    RoundRecord,
)
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
    restarts: int = 0
    counts: Mapping[int, int] | None = None  # joins per round, if the caller keeps them

    def joined(self, target: int) -> list[NodeRecord]:
        """Live nodes waiting for round ``target``."""
        return [self.nodes[n] for n, r in self.joins.items() if r == target and n in self.nodes]

    def count_joined(self, target: int) -> int:
        """How many live nodes wait for round ``target`` (O(1) when ``counts`` is kept)."""
        if self.counts is not None:
            return self.counts.get(target, 0)
        return len(self.joined(target))


class Step(enum.Enum):
    """What the coordinator should do about the round being formed."""

    WAIT = "wait"  # for a change in the store, or until ``deadline``
    COMPLETE = "complete"  # write ``record``: the round is formed


@dataclass(frozen=True, slots=True)
class JoinDecision:
    """One step of joining."""

    step: Step
    record: RoundRecord | None = None
    deadline: float | None = None
    target: int = 0


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


def decide_round(
    view: View, target: int, settings: Settings, min_reached_at: float | None, now: float
) -> JoinDecision:
    """Decide whether round ``target`` can complete now (the coordinator's question).

    Costs O(1) per call while the round is not ready (with ``view.counts``), so
    a coordinator can ask after every change even with thousands of nodes.
    """
    count = view.count_joined(target)
    if settings.static:
        candidates = view.joined(target) if count >= settings.max_nodes else []
        if candidates and _static_ready(candidates, settings):
            return JoinDecision(Step.COMPLETE, record=_record(view, target, candidates, settings))
        return JoinDecision(Step.WAIT)
    if count < settings.min_nodes:
        return JoinDecision(Step.WAIT)
    everyone = view.last_round is not None and count == len(view.nodes)
    deadline = (min_reached_at if min_reached_at is not None else now) + settings.last_call_timeout
    if count >= settings.max_nodes or everyone or now >= deadline:
        record = _record(view, target, view.joined(target), settings)
        return JoinDecision(Step.COMPLETE, record=record)
    return JoinDecision(Step.WAIT, deadline=deadline)


class Change(enum.Enum):
    """What a running node should do about the store's state."""

    KEEP = "keep"
    RESTART = "restart"  # a free restart: membership changed or a peer is restarting
    CLOSED = "closed"  # the job is over elsewhere
    LOST = "lost"  # this node lost the store (or its lease): it cannot know


@dataclass(frozen=True, slots=True)
class RunningDecision:
    """What to do while this node's workers run, and why."""

    change: Change
    reason: str = ""


def decide_running(view: View, current: RoundRecord, settings: Settings) -> RunningDecision:
    """Decide whether the workers of round ``current`` may keep running (a closed job is
    the caller's to see: it is one key, read before asking)."""
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


def assignments(record: RoundRecord) -> dict[str, Assignment]:
    """Every member's place in ``record``, in one pass (contract §3.2)."""
    role_totals: dict[str, int] = {}
    for member in record.members:
        role_totals[member.role] = role_totals.get(member.role, 0) + member.nproc
    placed: dict[str, Assignment] = {}
    base, role_base = 0, dict.fromkeys(role_totals, 0)
    for rank, member in enumerate(record.members):
        placed[member.node_id] = Assignment(
            rank, base, role_base[member.role], role_totals[member.role]
        )
        base += member.nproc
        role_base[member.role] += member.nproc
    return placed


def header_of(record: RoundRecord, master_addr: str | None = None) -> RoundHeader:
    """The small header every node watches."""
    return RoundHeader(
        record.round,
        len(record.members),
        sum(m.nproc for m in record.members),
        master_addr or record.master.addr,
        record.master.port,
        record.restarts,
    )


def result_from(header: RoundHeader, assignment: Assignment) -> RendezvousResult:
    """This node's view of a round, from the header and its own assignment."""
    return RendezvousResult(
        round=header.round,
        group_rank=assignment.group_rank,
        group_world_size=header.size,
        base_rank=assignment.base_rank,
        world_size=header.world_size,
        base_role_rank=assignment.base_role_rank,
        role_world_size=assignment.role_world_size,
        master_addr=header.master_addr,
        master_port=header.master_port,
        restarts=header.restarts,
    )
