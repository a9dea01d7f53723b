"""The store's state: keys, revisions, leases and watches, with no sockets and no clock.

Design note
-----------
``StoreState`` is everything the server knows, kept as plain data and driven by method
calls; the caller passes the time (``now``) in, so tests can step a fake clock and never
sleep. Sessions (connections) appear only as opaque integer *owners*: leases granted by an
owner and watches opened by it end when ``drop_owner`` is called.

* **Revisions.** One counter for the whole store, incremented by every change (each put,
  delete, add, and each key deleted when a lease ends). A key's *mod revision* is the value
  of that counter at its last change, as etcd's ``mod_revision``; compare-and-set compares
  against it, and 0 means "absent".
* **History.** The last ``history_limit`` changes are kept, so a watch can replay from a
  revision it already saw. Revisions are dense, so the retained window is simply
  ``(revision - len(history), revision]``; asking for anything older raises
  ``RevisionCompactedError``, and the caller re-reads with ``range`` instead.
* **Watches.** Grouped by prefix, so a change costs one ``startswith`` per distinct prefix,
  not per watch. Matching events are queued as ``Delivery`` values (owner, event), which the
  driver takes with ``take_deliveries`` after each call and writes to the owners' sockets.
* **Leases.** Deadlines sit in a heap with lazy deletion: a keep-alive pushes a new entry
  and leaves the old one, which is discarded when it reaches the top and no longer matches
  its lease. ``next_deadline`` is therefore O(1) amortised, so the driver can keep exactly
  one timer armed, for the earliest deadline.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import re
from collections import deque
from dataclasses import dataclass, field

from rallypoint.store._errors import (
    ErrorCode,
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreRequestError,
)
from rallypoint.store.api import CasResult
from rallypoint.store.messages import EventKind, KeyValue, WatchEvent

__all__ = ["Delivery", "StoreState"]

DEFAULT_HISTORY_LIMIT = 10_000
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A watch event addressed to the owner (connection) that opened the watch."""

    owner: int
    event: WatchEvent


@dataclass(frozen=True, slots=True)
class _Change:
    key: str
    value: str | None
    revision: int
    kind: EventKind


@dataclass(slots=True)
class _Entry:
    value: str
    revision: int
    lease: int | None


@dataclass(slots=True)
class _Lease:
    owner: int
    ttl: float
    deadline: float
    keys: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Watch:
    owner: int
    prefix: str


class StoreState:
    """The key table, revisions, leases and watch bookkeeping of one store.

    Args:
        history_limit: how many past changes to keep for watch replay.
    """

    def __init__(self, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        self._revision = 0
        self._entries: dict[str, _Entry] = {}
        self._sorted_keys: list[str] = []  # the same keys, sorted: range() is a bisect
        self._history: deque[_Change] = deque(maxlen=history_limit)
        self._leases: dict[int, _Lease] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._watches: dict[int, _Watch] = {}
        self._by_prefix: dict[str, set[int]] = {}
        self._owned_leases: dict[int, set[int]] = {}
        self._owned_watches: dict[int, set[int]] = {}
        self._next_id = 1
        self._outbox: list[Delivery] = []

    @property
    def revision(self) -> int:
        """The store's current revision (0 before the first change)."""
        return self._revision

    # --- reads -------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        """Return the key's value and mod revision, or None when absent."""
        entry = self._entries.get(key)
        return None if entry is None else KeyValue(key, entry.value, entry.revision)

    def range(self, prefix: str) -> tuple[tuple[KeyValue, ...], int]:
        """Return the keys starting with ``prefix``, sorted, and the current revision."""
        start = bisect.bisect_left(self._sorted_keys, prefix)
        keys = itertools.takewhile(
            lambda k: k.startswith(prefix), itertools.islice(self._sorted_keys, start, None)
        )
        table = self._entries
        entries = tuple(KeyValue(k, table[k].value, table[k].revision) for k in keys)
        return entries, self._revision

    # --- writes --------------------------------------------------------------------------

    def put(self, key: str, value: str, expected: int | None, lease: int | None) -> CasResult:
        """Set a key if its mod revision matches ``expected``.

        Args:
            key: the key.
            value: the new value.
            expected: None = always; 0 = only if absent; N = only if the mod revision is N.
            lease: attach the key to this lease (None detaches it from any lease).

        Returns:
            Whether it was set, and the key's revision and value afterwards.

        Raises:
            StoreRequestError: ``expected`` is negative.
            LeaseNotFoundError: ``lease`` does not exist.
        """
        _check_expected(expected)
        if lease is not None:
            self._lease(lease)
        if not self._matches(key, expected):
            return self._cas_result(key, ok=False)
        self._set(key, value, lease)
        return self._cas_result(key, ok=True)

    def delete(self, key: str, expected: int | None) -> CasResult:
        """Delete a key if its mod revision matches ``expected`` (see ``put``).

        Returns:
            ``ok`` is True when a key was deleted.
        """
        _check_expected(expected)
        if key not in self._entries or not self._matches(key, expected):
            return self._cas_result(key, ok=False)
        self._remove(key)
        return self._cas_result(key, ok=True)

    def add(self, key: str, amount: int) -> KeyValue:
        """Add ``amount`` to the decimal integer at ``key`` (absent counts as 0).

        The key keeps the lease it had.

        Raises:
            StoreRequestError: the current value is not a decimal integer.
        """
        entry = self._entries.get(key)
        if entry is not None and not _INTEGER.fullmatch(entry.value):
            raise StoreRequestError(
                ErrorCode.NOT_AN_INTEGER, f"value of key {key!r} is not an integer"
            )
        total = (0 if entry is None else int(entry.value)) + amount
        self._set(key, str(total), None if entry is None else entry.lease)
        return KeyValue(key, str(total), self._revision)

    # --- watches -------------------------------------------------------------------------

    def watch(self, owner: int, prefix: str, start_revision: int | None) -> int:
        """Open a watch on ``prefix`` for ``owner``; replay retained changes if asked.

        Replayed events (changes after ``start_revision``) are queued at once, so they
        reach the owner before any later change.

        Raises:
            RevisionCompactedError: changes after ``start_revision`` are no longer kept.
            StoreRequestError: ``start_revision`` is negative.
        """
        replay = [] if start_revision is None else self._replay(prefix, start_revision)
        watch_id = self._new_id()
        self._watches[watch_id] = _Watch(owner, prefix)
        self._by_prefix.setdefault(prefix, set()).add(watch_id)
        self._owned_watches.setdefault(owner, set()).add(watch_id)
        self._outbox.extend(Delivery(owner, _event(watch_id, c)) for c in replay)
        return watch_id

    def unwatch(self, owner: int, watch_id: int) -> None:
        """Close one of ``owner``'s watches.

        Raises:
            StoreRequestError: no such watch belongs to ``owner``.
        """
        watch = self._watches.get(watch_id)
        if watch is None or watch.owner != owner:
            raise StoreRequestError(ErrorCode.WATCH_NOT_FOUND, f"no watch {watch_id}")
        self._remove_watch(watch_id, watch)

    def take_deliveries(self) -> list[Delivery]:
        """Return and forget the watch events queued since the last call."""
        deliveries, self._outbox = self._outbox, []
        return deliveries

    # --- leases --------------------------------------------------------------------------

    def grant(self, owner: int, ttl: float, now: float) -> int:
        """Create a lease owned by ``owner`` that ends ``ttl`` seconds after ``now``.

        Raises:
            StoreRequestError: ``ttl`` is not a positive finite number.
        """
        if not (math.isfinite(ttl) and ttl > 0):
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, f"ttl must be > 0, not {ttl}")
        lease_id = self._new_id()
        self._leases[lease_id] = _Lease(owner, ttl, now + ttl)
        self._owned_leases.setdefault(owner, set()).add(lease_id)
        heapq.heappush(self._deadlines, (now + ttl, lease_id))
        return lease_id

    def keepalive(self, lease_id: int, now: float) -> None:
        """Restart a lease's TTL from ``now``. Call ``expire(now)`` first.

        Raises:
            LeaseNotFoundError: the lease ended or never existed.
        """
        lease = self._lease(lease_id)
        lease.deadline = now + lease.ttl
        heapq.heappush(self._deadlines, (lease.deadline, lease_id))

    def revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys.

        Raises:
            LeaseNotFoundError: the lease ended or never existed.
        """
        self._lease(lease_id)
        self._end_lease(lease_id)

    def expire(self, now: float) -> list[int]:
        """End every lease whose deadline is at or before ``now``; return their ids."""
        expired: list[int] = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, lease_id = heapq.heappop(self._deadlines)
            self._end_lease(lease_id)
            expired.append(lease_id)
        return expired

    def next_deadline(self) -> float | None:
        """Return the earliest deadline of a live lease, or None when there is none."""
        while self._deadlines:
            deadline, lease_id = self._deadlines[0]
            lease = self._leases.get(lease_id)
            if lease is not None and lease.deadline == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def drop_owner(self, owner: int) -> None:
        """Forget a closed session: close its watches, then end its leases."""
        for watch_id in sorted(self._owned_watches.pop(owner, set())):
            self._remove_watch(watch_id, self._watches[watch_id])
        for lease_id in sorted(self._owned_leases.get(owner, set())):
            self._end_lease(lease_id)

    # --- internals -------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _lease(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(f"lease {lease_id} does not exist (expired or revoked?)")
        return lease

    def _matches(self, key: str, expected: int | None) -> bool:
        entry = self._entries.get(key)
        return expected is None or expected == (0 if entry is None else entry.revision)

    def _cas_result(self, key: str, ok: bool) -> CasResult:
        entry = self._entries.get(key)
        if entry is None:
            return CasResult(ok, 0, None)
        return CasResult(ok, entry.revision, entry.value)

    def _set(self, key: str, value: str, lease: int | None) -> None:
        old = self._entries.get(key)
        if old is not None and old.lease is not None and old.lease != lease:
            self._leases[old.lease].keys.discard(key)
        if lease is not None:
            self._leases[lease].keys.add(key)
        if old is None:
            bisect.insort(self._sorted_keys, key)
        self._revision += 1
        self._entries[key] = _Entry(value, self._revision, lease)
        self._record(_Change(key, value, self._revision, EventKind.PUT))

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
        if entry.lease is not None:
            self._leases[entry.lease].keys.discard(key)
        self._revision += 1
        self._record(_Change(key, None, self._revision, EventKind.DELETE))

    def _end_lease(self, lease_id: int) -> None:
        lease = self._leases[lease_id]
        for key in sorted(lease.keys):
            self._remove(key)
        del self._leases[lease_id]
        owned = self._owned_leases[lease.owner]
        owned.discard(lease_id)
        if not owned:
            del self._owned_leases[lease.owner]

    def _record(self, change: _Change) -> None:
        self._history.append(change)
        for prefix, watch_ids in self._by_prefix.items():
            if change.key.startswith(prefix):
                self._outbox.extend(
                    Delivery(self._watches[w].owner, _event(w, change)) for w in sorted(watch_ids)
                )

    def _replay(self, prefix: str, start_revision: int) -> list[_Change]:
        if start_revision < 0:
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, "start_revision must be >= 0")
        oldest_kept = self._revision - len(self._history)
        if start_revision < oldest_kept:
            raise RevisionCompactedError(
                f"changes after revision {start_revision} are no longer kept "
                f"(oldest replayable start is {oldest_kept}); re-read with range"
            )
        newer: list[_Change] = []
        for change in reversed(self._history):  # revisions are consecutive: stop at once
            if change.revision <= start_revision:
                break
            if change.key.startswith(prefix):
                newer.append(change)
        newer.reverse()
        return newer

    def _remove_watch(self, watch_id: int, watch: _Watch) -> None:
        del self._watches[watch_id]
        peers = self._by_prefix[watch.prefix]
        peers.discard(watch_id)
        if not peers:
            del self._by_prefix[watch.prefix]
        owned = self._owned_watches.get(watch.owner)
        if owned is not None:
            owned.discard(watch_id)


def _check_expected(expected: int | None) -> None:
    if expected is not None and expected < 0:
        raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, "expected_revision must be >= 0")


def _event(watch_id: int, change: _Change) -> WatchEvent:
    return WatchEvent(watch_id, change.key, change.value, change.revision, change.kind)
