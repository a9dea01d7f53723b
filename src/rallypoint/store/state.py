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
* **Watches.** Kept in a ``WatchIndex`` (see ``_watchindex``): a change costs one dict
  lookup per distinct watched prefix length, plus one delivery per matching watch, never
  one test per watch. Matching events are queued as ``Delivery`` values (owner, event),
  which the driver takes with ``take_deliveries`` after each call.
* **Leases.** Deadlines sit in a heap with lazy deletion: a keep-alive pushes a new entry
  and leaves the old one, which is discarded when it reaches the top and no longer matches
  its lease. ``next_deadline`` is therefore O(1) amortised, so the driver can keep exactly
  one timer armed, for the earliest deadline. ``expire`` may be told to spare owners
  whose input the driver has not read yet (their keep-alive may be in it). Lease ids come
  from an injected source, by default random 62-bit numbers, so they cannot be guessed.
* **Quota.** Every input is bounded (``Quota``): the bytes of keys and values held, the
  bytes and count of the change history, the watches and leases of one owner, and the
  size of one range. A change beyond a bound is refused with ``no_space`` before it is
  applied; the history drops its oldest changes instead. Sizes are ``sys.getsizeof`` of
  the strings plus a fixed overhead per entry, so they track real memory.
"""

from __future__ import annotations

import bisect
import itertools
import re
import sys
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass

from rallypoint.store._errors import (
    ErrorCode,
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreRequestError,
)
from rallypoint.store._leasetable import LeaseTable, random_lease_id
from rallypoint.store._watchindex import WatchIndex
from rallypoint.store.api import CasResult
from rallypoint.store.messages import EventKind, KeyValue, WatchEvent

__all__ = ["DEFAULT_HISTORY_LIMIT", "DEFAULT_QUOTA", "Delivery", "Quota", "StoreState"]

DEFAULT_HISTORY_LIMIT = 10_000
_INTEGER = re.compile(r"-?[0-9]{1,19}")  # at most 19 digits: a signed 64-bit integer
_INT64 = range(-(1 << 63), 1 << 63)
_ENTRY_OVERHEAD = 200  # an _Entry or _Change, its dict and list slots, beyond its strings
_RANGE_ENTRY_BYTES = 16  # the least JSON an entry costs besides its strings: ["","",N],


@dataclass(frozen=True, slots=True)
class Quota:
    """The most one store holds; the defaults fit a 10,000-node job many times over.

    Attributes:
        max_data_bytes: keys and values held (sizes as in the module's design note).
        history_limit: changes kept for watch replay.
        max_history_bytes: bytes of those changes; the oldest go first.
        max_watches_per_owner: open watches of one session.
        max_leases_per_owner: live leases of one session.
    """

    max_data_bytes: int = 256 << 20
    history_limit: int = DEFAULT_HISTORY_LIMIT
    max_history_bytes: int = 64 << 20
    max_watches_per_owner: int = 1024
    max_leases_per_owner: int = 1024


DEFAULT_QUOTA = Quota()


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
    size: int  # _size(key, value), as counted in data_bytes


class StoreState:
    """The key table, revisions, leases and watch bookkeeping of one store.

    Args:
        quota: the bounds of what it holds.
        lease_ids: makes a new lease id (random 62-bit numbers by default).
    """

    def __init__(
        self, quota: Quota = DEFAULT_QUOTA, lease_ids: Callable[[], int] = random_lease_id
    ) -> None:
        self._quota = quota
        self._revision = 0
        self._entries: dict[str, _Entry] = {}
        self._sorted_keys: list[str] = []  # the same keys, sorted: range() is a bisect
        self._data_bytes = 0
        self._history: deque[tuple[_Change, int]] = deque()  # (change, its size)
        self._history_bytes = 0
        self._leases = LeaseTable(lease_ids, quota.max_leases_per_owner)
        self._watches = WatchIndex()
        self._next_id = 1
        self._outbox: list[Delivery] = []

    @property
    def data_bytes(self) -> int:
        """Bytes of keys and values held (as counted against ``Quota.max_data_bytes``)."""
        return self._data_bytes

    @property
    def history_bytes(self) -> int:
        """Bytes of the retained change history."""
        return self._history_bytes

    @property
    def revision(self) -> int:
        """The store's current revision (0 before the first change)."""
        return self._revision

    # --- reads -------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        """Return the key's value and mod revision, or None when absent."""
        entry = self._entries.get(key)
        return None if entry is None else KeyValue(key, entry.value, entry.revision)

    def range(self, prefix: str, max_bytes: int | None = None) -> tuple[tuple[KeyValue, ...], int]:
        """Return the keys starting with ``prefix``, sorted, and the current revision.

        Raises:
            StoreRequestError: (``too_large``) the entries would not fit in ``max_bytes``
                of JSON; found while collecting them, so the work stops there.
        """
        start = bisect.bisect_left(self._sorted_keys, prefix)
        keys = itertools.takewhile(
            lambda k: k.startswith(prefix), itertools.islice(self._sorted_keys, start, None)
        )
        table = self._entries
        entries, size = [], 0
        for k in keys:
            entry = table[k]
            size += len(k) + len(entry.value) + _RANGE_ENTRY_BYTES
            if max_bytes is not None and size > max_bytes:
                raise StoreRequestError(
                    ErrorCode.TOO_LARGE, f"range {prefix!r} exceeds the {max_bytes}-byte limit"
                )
            entries.append(KeyValue(k, entry.value, entry.revision))
        return tuple(entries), self._revision

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
            StoreRequestError: ``expected`` is negative, or (``no_space``) the quota is full.
            LeaseNotFoundError: ``lease`` does not exist.
        """
        _check_expected(expected)
        if lease is not None:
            self._leases.check(lease)
        if not self._matches(key, expected):
            return self._cas_result(key, ok=False)
        size = self._check_space(key, value)
        self._set(key, value, lease, size)
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

        Values and totals are signed 64-bit integers, as in torch's store. The key keeps
        the lease it had.

        Raises:
            StoreRequestError: the current value is not a decimal signed 64-bit integer,
                or the total would not be one.
        """
        entry = self._entries.get(key)
        current = 0 if entry is None else _int64(entry.value)
        if current is None:
            raise StoreRequestError(
                ErrorCode.NOT_AN_INTEGER, f"value of key {key!r} is not a 64-bit integer"
            )
        total = current + amount
        if total not in _INT64:
            raise StoreRequestError(
                ErrorCode.INVALID_ARGUMENT, f"adding {amount} to key {key!r} overflows 64 bits"
            )
        size = self._check_space(key, str(total))
        self._set(key, str(total), None if entry is None else entry.lease, size)
        return KeyValue(key, str(total), self._revision)

    # --- watches -------------------------------------------------------------------------

    def watch(self, owner: int, prefix: str, start_revision: int | None) -> int:
        """Open a watch on ``prefix`` for ``owner``; replay retained changes if asked.

        Replayed events (changes after ``start_revision``) are queued at once, so they
        reach the owner before any later change.

        Raises:
            RevisionCompactedError: changes after ``start_revision`` are no longer kept.
            StoreRequestError: ``start_revision`` is negative, or (``no_space``) the owner
                has ``Quota.max_watches_per_owner`` watches open.
        """
        if self._watches.count(owner) >= self._quota.max_watches_per_owner:
            raise _no_space(f"{self._quota.max_watches_per_owner} watches per connection")
        replay = [] if start_revision is None else self._replay(prefix, start_revision)
        watch_id = self._new_id()
        self._watches.add(watch_id, owner, prefix)
        self._outbox.extend(Delivery(owner, _event(watch_id, c)) for c in replay)
        return watch_id

    def unwatch(self, owner: int, watch_id: int) -> None:
        """Close one of ``owner``'s watches.

        Raises:
            StoreRequestError: no such watch belongs to ``owner``.
        """
        if self._watches.owner_of(watch_id) != owner:
            raise StoreRequestError(ErrorCode.WATCH_NOT_FOUND, f"no watch {watch_id}")
        self._watches.remove(watch_id)

    def take_deliveries(self) -> list[Delivery]:
        """Return and forget the watch events queued since the last call."""
        deliveries, self._outbox = self._outbox, []
        return deliveries

    # --- leases --------------------------------------------------------------------------

    def grant(self, owner: int, ttl: float, now: float) -> int:
        """Create a lease owned by ``owner`` that ends ``ttl`` seconds after ``now``.

        Raises:
            StoreRequestError: ``ttl`` is not a positive finite number, or (``no_space``)
                the owner has ``Quota.max_leases_per_owner`` leases.
        """
        return self._leases.grant(owner, ttl, now)

    def keepalive(self, lease_id: int, now: float) -> None:
        """Restart a lease's TTL from ``now``. Call ``expire(now)`` first.

        Raises:
            LeaseNotFoundError: the lease ended or never existed.
        """
        self._leases.keepalive(lease_id, now)

    def revoke(self, owner: int, lease_id: int) -> None:
        """End one of ``owner``'s leases now, deleting its keys.

        Raises:
            LeaseNotFoundError: the lease ended, never existed or is not ``owner``'s.
        """
        if self._leases.owner_of(lease_id) != owner:
            raise LeaseNotFoundError(f"lease {lease_id} does not belong to this connection")
        self._end_lease(lease_id)

    def expire(self, now: float, spared: Container[int] = ()) -> list[int]:
        """End every lease whose deadline is at or before ``now``; return their ids.

        Leases of the owners in ``spared`` stay, still due, for a later call.
        """
        expired = self._leases.due(now, spared)
        for lease_id in expired:
            self._end_lease(lease_id)
        return expired

    def next_deadline(self) -> float | None:
        """Return the earliest deadline of a live lease, or None when there is none."""
        return self._leases.next_deadline()

    def drop_owner(self, owner: int) -> None:
        """Forget a closed session: close its watches, then end its leases."""
        for watch_id in self._watches.owned(owner):
            self._watches.remove(watch_id)
        for lease_id in self._leases.owned(owner):
            self._end_lease(lease_id)

    # --- internals -------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _matches(self, key: str, expected: int | None) -> bool:
        entry = self._entries.get(key)
        return expected is None or expected == (0 if entry is None else entry.revision)

    def _cas_result(self, key: str, ok: bool) -> CasResult:
        entry = self._entries.get(key)
        if entry is None:
            return CasResult(ok, 0, None)
        return CasResult(ok, entry.revision, entry.value)

    def _check_space(self, key: str, value: str) -> int:
        """The size ``key`` would have with ``value``; raises ``no_space`` if it does not fit."""
        old = self._entries.get(key)
        size = _size(key, value)
        if self._data_bytes + size - (0 if old is None else old.size) > self._quota.max_data_bytes:
            raise _no_space(f"{self._quota.max_data_bytes} bytes of keys and values")
        return size

    def _set(self, key: str, value: str, lease: int | None, size: int) -> None:
        old = self._entries.get(key)
        if old is not None and old.lease is not None and old.lease != lease:
            self._leases.detach(old.lease, key)
        if lease is not None:
            self._leases.attach(lease, key)
        if old is None:
            bisect.insort(self._sorted_keys, key)
        else:
            self._data_bytes -= old.size
        self._data_bytes += size
        self._revision += 1
        self._entries[key] = _Entry(value, self._revision, lease, size)
        self._record(_Change(key, value, self._revision, EventKind.PUT), size)

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
        if entry.lease is not None:
            self._leases.detach(entry.lease, key)
        self._data_bytes -= entry.size
        self._revision += 1
        self._record(_Change(key, None, self._revision, EventKind.DELETE), _size(key, ""))

    def _end_lease(self, lease_id: int) -> None:
        for key in self._leases.keys(lease_id):
            self._remove(key)
        self._leases.forget(lease_id)

    def _record(self, change: _Change, size: int) -> None:
        self._history.append((change, size))
        self._history_bytes += size
        quota = self._quota
        while len(self._history) > quota.history_limit or (
            self._history_bytes > quota.max_history_bytes and len(self._history) > 1
        ):
            self._history_bytes -= self._history.popleft()[1]
        self._outbox.extend(
            Delivery(owner, _event(w, change)) for w, owner in self._watches.matching(change.key)
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
        for change, _ in reversed(self._history):  # revisions are consecutive: stop at once
            if change.revision <= start_revision:
                break
            if change.key.startswith(prefix):
                newer.append(change)
        newer.reverse()
        return newer


def _check_expected(expected: int | None) -> None:
    if expected is not None and expected < 0:
        raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, "expected_revision must be >= 0")


def _event(watch_id: int, change: _Change) -> WatchEvent:
    return WatchEvent(watch_id, change.key, change.value, change.revision, change.kind)


def _no_space(what: str) -> StoreRequestError:
    return StoreRequestError(ErrorCode.NO_SPACE, f"store quota reached: {what}")


def _size(key: str, value: str, _sizeof: Callable[[object], int] = sys.getsizeof) -> int:
    return _sizeof(key) + _sizeof(value) + _ENTRY_OVERHEAD


def _int64(text: str) -> int | None:
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if value in _INT64 else None
