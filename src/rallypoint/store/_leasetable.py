"""The store's leases: owners, keys, deadlines in a lazy heap (pure; ``now`` passed in)."""

from __future__ import annotations

import heapq
import math
import secrets
from collections.abc import Callable, Container
from dataclasses import dataclass, field

from rallypoint.store._errors import ErrorCode, LeaseNotFoundError, StoreRequestError

__all__ = ["LeaseTable", "random_lease_id"]


def random_lease_id() -> int:
    """A lease id nobody can guess: 62 random bits (it fits any signed 64-bit field)."""
    return secrets.randbits(62) + 1


@dataclass(slots=True)
class _Lease:
    owner: int
    ttl: float
    deadline: float
    keys: set[str] = field(default_factory=set)


class LeaseTable:
    """Live leases by id and by owner, and their deadlines.

    A keep-alive pushes a new heap entry and leaves the old one, which is discarded when
    it reaches the top and no longer matches its lease: ``next_deadline`` is O(1)
    amortised.

    Args:
        new_id: makes a lease id (called again on the rare collision).
        max_per_owner: the most leases one owner may hold.
    """

    def __init__(self, new_id: Callable[[], int], max_per_owner: int) -> None:
        self._new_id = new_id
        self._max_per_owner = max_per_owner
        self._leases: dict[int, _Lease] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._owned: dict[int, set[int]] = {}

    def check(self, lease_id: int) -> None:
        """Raise ``LeaseNotFoundError`` unless the lease is live."""
        self._get(lease_id)

    def owner_of(self, lease_id: int) -> int:
        """The lease's owner; raises ``LeaseNotFoundError`` unless it is live."""
        return self._get(lease_id).owner

    def grant(self, owner: int, ttl: float, now: float) -> int:
        """Create a lease ending ``ttl`` s after ``now``; see ``StoreState.grant``."""
        if not (math.isfinite(ttl) and ttl > 0):
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, f"ttl must be > 0, not {ttl}")
        if len(self._owned.get(owner, ())) >= self._max_per_owner:
            raise StoreRequestError(
                ErrorCode.NO_SPACE,
                f"store quota reached: {self._max_per_owner} leases per connection",
            )
        lease_id = self._new_id()
        while lease_id in self._leases:
            lease_id = self._new_id()
        self._leases[lease_id] = _Lease(owner, ttl, now + ttl)
        self._owned.setdefault(owner, set()).add(lease_id)
        heapq.heappush(self._deadlines, (now + ttl, lease_id))
        return lease_id

    def keepalive(self, lease_id: int, now: float) -> None:
        """Restart a lease's TTL from ``now``."""
        lease = self._get(lease_id)
        lease.deadline = now + lease.ttl
        heapq.heappush(self._deadlines, (lease.deadline, lease_id))

    def attach(self, lease_id: int, key: str) -> None:
        """Tie ``key`` to a live lease."""
        self._leases[lease_id].keys.add(key)

    def detach(self, lease_id: int, key: str) -> None:
        """Untie ``key`` from its lease."""
        self._leases[lease_id].keys.discard(key)

    def keys(self, lease_id: int) -> list[str]:
        """The keys tied to a live lease, sorted."""
        return sorted(self._leases[lease_id].keys)

    def forget(self, lease_id: int) -> None:
        """Remove a lease (its keys must be gone already)."""
        lease = self._leases.pop(lease_id)
        owned = self._owned[lease.owner]
        owned.discard(lease_id)
        if not owned:
            del self._owned[lease.owner]

    def owned(self, owner: int) -> list[int]:
        """The live leases of ``owner``."""
        return sorted(self._owned.get(owner, ()))

    def due(self, now: float, spared: Container[int]) -> list[int]:
        """Leases whose deadline is at or before ``now``, except those of ``spared`` owners.

        The returned leases leave the heap (end them next); spared ones stay due.
        """
        found: list[tuple[float, int]] = []
        kept: list[tuple[float, int]] = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            entry = heapq.heappop(self._deadlines)
            (kept if self._leases[entry[1]].owner in spared else found).append(entry)
        for entry in kept:
            heapq.heappush(self._deadlines, entry)
        return [lease_id for _, lease_id in found]

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live lease, or None when there is none."""
        while self._deadlines:
            deadline, lease_id = self._deadlines[0]
            lease = self._leases.get(lease_id)
            if lease is not None and lease.deadline == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def _get(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(f"lease {lease_id} does not exist (expired or revoked?)")
        return lease
