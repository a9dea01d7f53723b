"""Who hangs the job, from every rank's stack: a pure verdict.

Design note: in a hang, most ranks wait in a collective for the others. The
odd ones out are the culprits:

- ranks that are not in a ``torch.distributed`` collective while others are
  (a stalled data loader, a rank that took another branch): a STALL;
- when every rank is in a collective but not all in the same one, the ranks
  in a different collective than the majority (all of them when no
  collective has a strict majority): a MISMATCH;
- when every rank waits in the same collective, nobody local is to blame
  (the network, a peer outside the job): ALL_WAITING;
- when no rank is in a collective, the stuck ranks themselves: NO_COLLECTIVE.

Ranks are grouped by what they are doing and where, so a verdict over ten
thousand ranks names a handful of places.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from rallypoint.hangs.detector import RankStack
from rallypoint.hangs.dump import Frame


class VerdictKind(enum.Enum):
    """What kind of hang it is."""

    STALL = "stall"
    MISMATCH = "mismatch"
    ALL_WAITING = "all_waiting"
    NO_COLLECTIVE = "no_collective"


@dataclass(frozen=True, slots=True)
class Group:
    """Ranks doing the same thing at the same place."""

    ranks: tuple[int, ...]
    collective: str | None  # None: not in a collective
    where: Frame | None
    unchanged_for: float  # the shortest among the group's ranks


@dataclass(frozen=True, slots=True)
class Verdict:
    """The culprits, and the ranks that wait for them."""

    kind: VerdictKind
    culprits: tuple[Group, ...]
    waiting: tuple[Group, ...]


def _groups(ranks: Sequence[RankStack]) -> list[Group]:
    by_place: dict[tuple[str | None, Frame | None], list[RankStack]] = {}
    for rank in ranks:
        by_place.setdefault((rank.digest.collective, rank.digest.where), []).append(rank)
    groups = [
        Group(
            tuple(sorted(r.rank for r in members)),
            collective,
            where,
            min(r.unchanged_for for r in members),
        )
        for (collective, where), members in by_place.items()
    ]
    return sorted(groups, key=lambda g: (-len(g.ranks), g.ranks))


def _by_collective(groups: list[Group]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for group in groups:
        if group.collective is not None:
            sizes[group.collective] = sizes.get(group.collective, 0) + len(group.ranks)
    return sizes


def judge(ranks: Sequence[RankStack], stuck: Sequence[RankStack]) -> Verdict:
    """The verdict over every rank's latest stack, given which ranks are stuck."""
    groups = _groups(ranks)
    inside = [g for g in groups if g.collective is not None]
    outside = [g for g in groups if g.collective is None]
    if inside and outside:
        return Verdict(VerdictKind.STALL, tuple(outside), tuple(inside))
    if not inside:
        stuck_ranks = {r.rank for r in stuck}
        culprits = [g for g in groups if stuck_ranks & set(g.ranks)]
        others = [g for g in groups if g not in culprits]
        return Verdict(VerdictKind.NO_COLLECTIVE, tuple(culprits), tuple(others))
    sizes = _by_collective(inside)
    if len(sizes) == 1:
        return Verdict(VerdictKind.ALL_WAITING, (), tuple(inside))
    ranked = sorted(sizes.values(), reverse=True)
    majority = max(sizes, key=lambda c: sizes[c]) if ranked[0] > ranked[1] else None
    culprits = [g for g in inside if g.collective != majority]
    waiting = [g for g in inside if g.collective == majority]
    return Verdict(VerdictKind.MISMATCH, tuple(culprits), tuple(waiting))
