"""Which ranks are stuck: a pure detector over (rank, digest, time) samples.

Design note: a rank is stuck when two samples of its main-thread stack that
are ``timeout`` seconds apart, and every sample between them, are the same
stack. Only evidence counts: the time between the first and the latest
identical samples, never the time since the last sample, so a rank whose
samples stop coming (a worker frozen by SIGSTOP, a channel the user's code
closed) is never called stuck, and neither is a rank whose stack changed at
any sample. A long single operation (one C call, a big write) has one stack
for as long as it lasts: it is called stuck only if it lasts the timeout,
which is why the timeout must be sized above the longest such operation
(docs/hangs.md). Times come from the caller (the agent's monotonic clock).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rallypoint.hangs.digest import StackDigest


@dataclass(frozen=True, slots=True)
class RankStack:
    """The latest stack of one rank, and since when it has been the same."""

    rank: int
    digest: StackDigest
    since: float  # time of the first of the identical samples
    seen: float  # time of the latest sample

    @property
    def unchanged_for(self) -> float:
        """Seconds the evidence shows the stack unchanged."""
        return self.seen - self.since


class StuckDetector:
    """Tracks every rank's stack; says which have not changed for ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("the hang timeout must be positive")
        self.timeout = timeout
        self.ranks: dict[int, RankStack] = {}

    def observe(self, rank: int, digest: StackDigest, at: float) -> RankStack:
        """Take one sample of ``rank`` taken at time ``at``."""
        old = self.ranks.get(rank)
        if old is not None and old.digest.key == digest.key and at >= old.seen:
            new = replace(old, digest=digest, seen=at)
        else:
            new = RankStack(rank, digest, at, at)
        self.ranks[rank] = new
        return new

    def forget(self, rank: int) -> None:
        """The rank ended (or a new attempt begins): drop its history."""
        self.ranks.pop(rank, None)

    def stuck(self) -> list[RankStack]:
        """The ranks stuck now, in rank order."""
        return sorted(
            (r for r in self.ranks.values() if r.unchanged_for >= self.timeout),
            key=lambda r: r.rank,
        )
