"""Which watches match a key, in time proportional to the watches that match.

Design note
-----------
Watches are grouped by prefix (a dict from prefix to watch ids), and the index also keeps
the sorted list of distinct prefix *lengths*. The prefixes of a key that anyone watches
are then found with one dict lookup per distinct length not longer than the key, never by
testing every watch: a change costs O(number of distinct watched prefix lengths that fit
in the key, at most the key's length) plus one delivery per matching watch. 100,000
watches on prefixes of a few dozen lengths cost a few dozen lookups per change, where a
scan would have cost 100,000 ``startswith`` calls.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["WatchIndex"]


@dataclass(frozen=True, slots=True)
class _Watch:
    owner: int
    prefix: str


class WatchIndex:
    """Open watches by id, by owner and by prefix (pure bookkeeping)."""

    def __init__(self) -> None:
        self._watches: dict[int, _Watch] = {}
        self._by_prefix: dict[str, set[int]] = {}
        self._lengths: list[int] = []  # sorted distinct len(prefix) of _by_prefix's keys
        self._prefixes_of_length: dict[int, int] = {}
        self._owned: dict[int, set[int]] = {}

    def owner_of(self, watch_id: int) -> int | None:
        """The owner of a watch, or None when there is no such watch."""
        watch = self._watches.get(watch_id)
        return None if watch is None else watch.owner

    def count(self, owner: int) -> int:
        """How many watches ``owner`` has open."""
        return len(self._owned.get(owner, ()))

    def owned(self, owner: int) -> list[int]:
        """The ids of ``owner``'s watches, oldest first."""
        return sorted(self._owned.get(owner, ()))

    def add(self, watch_id: int, owner: int, prefix: str) -> None:
        """Register a new watch."""
        self._watches[watch_id] = _Watch(owner, prefix)
        peers = self._by_prefix.setdefault(prefix, set())
        if not peers:
            self._count_length(len(prefix), +1)
        peers.add(watch_id)
        self._owned.setdefault(owner, set()).add(watch_id)

    def remove(self, watch_id: int) -> None:
        """Forget a watch (it must exist)."""
        watch = self._watches.pop(watch_id)
        peers = self._by_prefix[watch.prefix]
        peers.discard(watch_id)
        if not peers:
            del self._by_prefix[watch.prefix]
            self._count_length(len(watch.prefix), -1)
        owned = self._owned[watch.owner]
        owned.discard(watch_id)
        if not owned:
            del self._owned[watch.owner]

    def matching(self, key: str) -> list[tuple[int, int]]:
        """(watch id, owner) of every watch whose prefix ``key`` starts with."""
        found: list[tuple[int, int]] = []
        if not self._lengths:
            return found
        end = bisect.bisect_right(self._lengths, len(key))
        for length in self._lengths[:end]:
            ids = self._by_prefix.get(key[:length])
            if ids:
                found.extend((w, self._watches[w].owner) for w in sorted(ids))
        return found

    def _count_length(self, length: int, step: int) -> None:
        count = self._prefixes_of_length.get(length, 0) + step
        if count == 0:
            del self._prefixes_of_length[length]
            del self._lengths[bisect.bisect_left(self._lengths, length)]
            return
        if count == 1 and step > 0:
            bisect.insort(self._lengths, length)
        self._prefixes_of_length[length] = count
