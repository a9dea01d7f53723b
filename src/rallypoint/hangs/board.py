"""Every node's digests in one place: the record each agent publishes, and the job-wide verdict.

Design note: each agent publishes one record under its own key
(``stacks/<node id>``, leased: it vanishes with the agent): for each of its
ranks the :class:`StackDigest` and the wall-clock time since which it has been
the same. The record holds no time of the latest sample, so it only changes
when a rank's stack does (or a rank comes or goes), and the agent writes it
then, at most once per sample period. Its size is bounded (``MAX_RANKS`` ranks,
``MAX_FILE`` characters per file name), so ten thousand records stay a few
megabytes, read once per hang by a node whose own ranks look stuck.

A rank of another node is taken as unchanged from its ``since`` until now:
its node would have written a new record had it changed, and the record is
gone if that node's agent is. Wall clocks are compared across nodes, so
clock skew shows as a few seconds more or less "stuck"; only the node's own
detector (its own evidence) ever decides that a hang exists. All pure: times
come from the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rallypoint.hangs.detector import RankStack
from rallypoint.hangs.digest import StackDigest
from rallypoint.hangs.verdict import Verdict, judge

STACKS_PREFIX = "stacks/"
HANG_KEY = "job/hang"  # under the prefix every node follows: "<round> <headline>"
VERSION = 1
MAX_RANKS = 512  # per node; more than any node runs
MAX_FILE = 160  # characters of a file name kept (its end, where the name is)


class StackBoard(Protocol):
    """Where the nodes' records meet (:class:`rallypoint.rendezvous.stacks.StoreStackBoard`)."""

    node: str
    period: float  # at most one write per period

    def offer(self, text: str) -> None:
        """Publish this node's record soon, without waiting."""
        ...

    async def others(self) -> dict[str, str]:
        """Every other node's record text, by node id."""
        ...

    async def announce(self, round_: int, text: str) -> None:
        """Tell every node, before the culprit is stopped, who hangs round ``round_``."""
        ...

    def announced(self, round_: int) -> str:
        """What a node announced for round ``round_`` ("" when nothing)."""
        ...


@dataclass(frozen=True, slots=True)
class PublishedRank:
    """One rank as its node published it."""

    rank: int
    digest: StackDigest
    since: float  # wall clock: the first of its identical samples


@dataclass(frozen=True, slots=True)
class NodeDigests:
    """One node's record: its ranks' digests."""

    node: str
    ranks: tuple[PublishedRank, ...]

    def to_text(self) -> str:
        """The record's JSON, bounded in size."""
        ranks = [[r.rank, round(r.since, 3), _short(r.digest.to_json())] for r in self.ranks]
        return json.dumps({"v": VERSION, "r": ranks[:MAX_RANKS]}, separators=(",", ":"))

    @classmethod
    def from_text(cls, node: str, text: str) -> NodeDigests:
        """The inverse of :meth:`to_text`; ValueError when it is not such a record."""
        try:
            data = json.loads(text)
            if data["v"] != VERSION:
                raise ValueError(f"version {data['v']!r}")
            ranks = tuple(
                PublishedRank(int(rank), StackDigest.from_json(dict(raw)), float(since))
                for rank, since, raw in data["r"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stack record of node {node}: {exc}") from exc
        return cls(node, ranks)


def _short(data: dict[str, object]) -> dict[str, object]:
    for name in ("t", "s"):
        frame = data.get(name)
        if isinstance(frame, list) and len(str(frame[0])) > MAX_FILE:
            data[name] = ["..." + str(frame[0])[-MAX_FILE:], *frame[1:]]
    return data


def local_record(node: str, ranks: Iterable[RankStack], wall_offset: float) -> NodeDigests:
    """This node's record from its detector (``wall_offset``: wall minus monotonic time)."""
    published = (PublishedRank(r.rank, r.digest, r.since + wall_offset) for r in ranks)
    return NodeDigests(node, tuple(sorted(published, key=lambda r: r.rank)))


def job_ranks(nodes: Sequence[NodeDigests], now: float) -> tuple[RankStack, ...]:
    """Every rank of every node as seen at wall time ``now``; the first node to name a rank wins."""
    seen: dict[int, RankStack] = {}
    for node in nodes:
        for r in node.ranks:
            seen.setdefault(r.rank, RankStack(r.rank, r.digest, min(r.since, now), now))
    return tuple(sorted(seen.values(), key=lambda r: r.rank))


def judge_job(
    nodes: Sequence[NodeDigests], now: float, timeout: float
) -> tuple[Verdict, tuple[RankStack, ...]]:
    """The verdict over all nodes' ranks at wall time ``now`` (this node's record first)."""
    ranks = job_ranks(nodes, now)
    return judge(ranks, [r for r in ranks if r.unchanged_for >= timeout]), ranks
