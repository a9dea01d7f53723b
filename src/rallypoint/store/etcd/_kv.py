"""One run's keys in etcd: reads, writes, compare-and-set and counters.

Design note
-----------
Keys live under the run's prefix (``/rallypoint/<run_id>/``); callers never see it.
Revisions are etcd's: a key's revision is its ``mod_revision`` and ``range`` reports the
header revision.

* Every write is one etcd transaction guarded by a receipt (``_receipts``), so it lands at
  most once however often its request is sent again.
* Compare-and-set compares the key's ``mod_revision`` (or its ``create_revision`` against 0
  for "absent"), puts or deletes on success, and reads the key on failure so the result
  carries the current value and revision. An unconditional put has no compare of its own.
* ``add`` reads the counter, then commits ``value + amount`` in a transaction on the
  ``mod_revision`` it read (keeping the key's lease with ``ignore_lease``), and retries
  from the failure branch's fresh read when another writer came first. The receipt tells
  that apart from its own earlier copy having landed, which a read-back of the value
  cannot: another node adding the same amount from the same count writes the same value.
* An unconditional delete is a compare-and-delete on the ``mod_revision`` last read (and
  read again from the failure branch), so that the answer says whether *this* call deleted
  the key, even when an earlier copy of it landed and its reply was lost.
"""

from __future__ import annotations

from typing import Any

from rallypoint.store._errors import ErrorCode, StoreProtocolError, StoreRequestError
from rallypoint.store.api import CasResult, RangeResult
from rallypoint.store.messages import KeyValue

from ._codec import b64, header_revision, int_field, prefix_range, unb64
from ._gateway import Call
from ._leases import LeaseKeeper
from ._receipts import Outcome, Receipts


class KeySpace:
    """The KV operations of an etcd store, on the keys under ``prefix``.

    Args:
        call: sends one request to etcd (the store's ``Gateway.call``, checked open).
        prefix: the etcd key prefix of the run, ending in ``/``.
        leases: the store's leases, to refuse writes under one that has expired.
        receipts: guards every write, so that a copy sent again is not applied twice.
    """

    def __init__(self, call: Call, prefix: str, leases: LeaseKeeper, receipts: Receipts) -> None:
        self._call = call
        self.prefix = prefix
        self._leases = leases
        self._receipts = receipts

    def full_key(self, key: str) -> str:
        """The etcd key of a store key."""
        return self.prefix + key

    def strip_key(self, full: str) -> str:
        """The store key of an etcd key under this run's prefix."""
        if not full.startswith(self.prefix):
            raise StoreProtocolError(f"etcd returned key {full!r} outside {self.prefix!r}")
        return full[len(self.prefix) :]

    async def probe(self) -> dict[str, Any]:
        """Count the run's keys: etcd's reply, whose header holds the current revision."""
        payload = prefix_range(self.prefix)
        payload["count_only"] = True
        return await self._call("/v3/kv/range", payload, "range", replay_safe=True)

    async def get(self, key: str) -> KeyValue | None:
        """The key's value and mod revision, or None when absent."""
        reply = await self._call(
            "/v3/kv/range", {"key": b64(self.full_key(key))}, f"get {key!r}", replay_safe=True
        )
        kvs = reply.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def range(self, prefix: str) -> RangeResult:
        """Every key starting with ``prefix`` and the current store revision."""
        payload = prefix_range(self.full_key(prefix))
        reply = await self._call("/v3/kv/range", payload, "range", replay_safe=True)
        entries = tuple(self._kv(kv) for kv in reply.get("kvs") or [])
        return RangeResult(entries, header_revision(reply))

    async def put(
        self, key: str, value: str, expected_revision: int | None, lease: int | None
    ) -> CasResult:
        """Set a key; ``expected_revision`` None = always, 0 = if absent, N = if at N."""
        request: dict[str, Any] = {"key": b64(self.full_key(key)), "value": b64(value)}
        if lease is not None:
            self._leases.check(lease)
            request["lease"] = str(lease)
        outcome = await self._guarded(key, expected_revision, {"request_put": request}, "put")
        if outcome.landed:
            return CasResult(True, outcome.revision, value)
        return self._current(outcome)

    async def delete(self, key: str, expected_revision: int | None) -> CasResult:
        """Delete a key under the same condition as ``put``; ok when a key was deleted."""
        op = {"request_delete_range": {"key": b64(self.full_key(key))}}
        if expected_revision is None:
            return await self._delete_any(key, op)
        outcome = await self._guarded(key, expected_revision, op, "delete")
        if outcome.landed:  # the compare held: the key was there (N) or absent (0)
            return CasResult(expected_revision > 0, 0, None)
        return self._current(outcome)

    async def _delete_any(self, key: str, op: dict[str, Any]) -> CasResult:
        """Delete the key whatever its revision: a compare-and-delete on the one last read."""
        current = await self.get(key)
        expected = None if current is None else current.revision
        while expected is not None:
            outcome = await self._guarded(key, expected, op, "delete")
            if outcome.landed:
                return CasResult(True, 0, None)
            result = self._current(outcome)
            expected = None if result.value is None else result.revision
        return CasResult(False, 0, None)

    async def add(self, key: str, amount: int) -> int:
        """Add to the decimal counter at ``key`` (absent counts as 0); return the total."""
        current = await self.get(key)
        full = b64(self.full_key(key))
        while True:
            total = _counter(key, current) + amount
            put: dict[str, Any] = {"key": full, "value": b64(str(total))}
            if current is not None:
                put["ignore_lease"] = True  # the key keeps its lease
            expected = 0 if current is None else current.revision
            outcome = await self._guarded(key, expected, {"request_put": put}, "add to")
            if outcome.landed:
                return total
            result = self._current(outcome)
            current = None if result.value is None else KeyValue(key, result.value, result.revision)

    async def _guarded(
        self, key: str, expected: int | None, success: dict[str, Any], what: str
    ) -> Outcome:
        """One write under ``expected`` (None: always), applied at most once (``_receipts``)."""
        if expected is not None and expected < 0:
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, "expected_revision must be >= 0")
        full = b64(self.full_key(key))
        compare = [] if expected is None else [_compare(full, expected)]
        failure = [{"request_range": {"key": full}}]
        return await self._receipts.txn(compare, [success], failure, f"{what} {key!r}")

    def _current(self, refused: Outcome) -> CasResult:
        """The key as the failure branch of a refused write read it."""
        responses = refused.responses or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return CasResult(False, 0, None)
        kv = self._kv(kvs[0])
        return CasResult(False, kv.revision, kv.value)

    def _kv(self, kv: dict[str, Any]) -> KeyValue:
        return KeyValue(
            self.strip_key(unb64(kv.get("key"))),
            unb64(kv.get("value")),
            int_field(kv, "mod_revision"),
        )


def _compare(full: str, expected: int) -> dict[str, str]:
    """The transaction's condition: absent (0), or at mod revision ``expected``."""
    if expected == 0:
        return {"key": full, "target": "CREATE", "create_revision": "0", "result": "EQUAL"}
    return {"key": full, "target": "MOD", "mod_revision": str(expected), "result": "EQUAL"}


def _counter(key: str, current: KeyValue | None) -> int:
    """The counter's value (0 when absent).

    Raises:
        StoreRequestError: the key holds something other than a decimal integer.
    """
    try:
        return 0 if current is None else int(current.value)
    except ValueError:
        raise StoreRequestError(
            ErrorCode.NOT_AN_INTEGER, f"key {key!r} does not hold an integer"
        ) from None
