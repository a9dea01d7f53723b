"""Receipts: etcd transactions that may be sent twice and still apply at most once.

Design note
-----------
A reply can be lost after etcd applied the request (the connection is reset, etcd's leader
changes). Sending the request again must not apply it twice, and the second reply must not
hide that the first one landed: a compare-and-set sent again finds its own write and reports
"someone else came first", so an ``add`` that then retries counts twice.

So each write carries a *receipt*. The store owns a few receipt keys (slots) outside every
run's key space, under ``/rallypoint/<run_id>\\x00receipts/<token>/`` (a run id never holds
a NUL). A write takes a free slot and becomes one transaction:

* compare: the caller's own conditions, **and** the slot's ``mod_revision`` is still the one
  this store last saw (no write through this slot has landed since);
* success: the caller's operations, and put a fresh nonce into the slot;
* failure: the caller's reads, and read the slot.

Whichever copy of it etcd applies first moves the slot on, so every other copy fails the
slot's compare (at most one applies, however late a copy arrives), and its failure branch
reads our nonce back: the write landed, once. A failure with the slot unchanged is the
caller's own compare failing. The slot and the write share one revision, and the slot is
outside the run's prefix, so watches and ranges of the run never see receipts. Slots are
reused by later writes; one whose write ended in an error is dropped (its state is
unknown), and ``close`` deletes them all.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from rallypoint.store._errors import StoreProtocolError

from ._codec import b64, header_revision, int_field, prefix_range, unb64
from ._gateway import Call


@dataclass(slots=True)
class _Slot:
    """One receipt key and its ``mod_revision`` as this store last saw it (0: never written)."""

    key: str  # base64, as the gateway wants it
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a guarded transaction ended.

    Attributes:
        landed: the caller's compare held and its operations were applied, exactly once.
        revision: the store revision of the write that landed (0 when it did not).
        responses: the responses to the caller's own operations: of the success branch
            when this copy landed, of the failure branch when the compare failed; None when
            an earlier copy landed (its responses were lost with its reply).
    """

    landed: bool
    revision: int
    responses: list[dict[str, Any]] | None


class Receipts:
    """The receipt slots of one store, and the transactions guarded by them.

    Args:
        call: sends one request to etcd (the store's ``Gateway.call``, checked open).
        root: the receipts' key root for the run (``/rallypoint/<run_id>\\x00receipts/``).
    """

    def __init__(self, call: Call, root: str) -> None:
        self._call = call
        self.prefix = f"{root}{secrets.token_hex(16)}/"
        self._free: list[_Slot] = []
        self._slot_ids = itertools.count()
        self._nonces = itertools.count(1)

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]],
        what: str,
    ) -> Outcome:
        """Run one transaction that lands at most once, however often it is sent.

        Raises:
            StoreProtocolError: someone else wrote this store's receipt key.
        """
        slot = self._take()
        outcome = await self._attempt(slot, compare, success, failure, what)
        self._free.append(slot)  # not reached on an error: the slot's state is unknown
        return outcome

    async def _attempt(
        self,
        slot: _Slot,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]],
        what: str,
    ) -> Outcome:
        nonce = str(next(self._nonces))
        guard = {"key": slot.key, "target": "MOD", "mod_revision": str(slot.revision)}
        payload = {
            "compare": [*compare, {**guard, "result": "EQUAL"}],
            "success": [*success, {"request_put": {"key": slot.key, "value": b64(nonce)}}],
            "failure": [*failure, {"request_range": {"key": slot.key}}],
        }
        reply = await self._call("/v3/kv/txn", payload, what, replay_safe=True)
        responses = reply.get("responses") or []
        if reply.get("succeeded"):
            slot.revision = header_revision(reply)
            return Outcome(True, slot.revision, responses[: len(success)])
        kvs = (responses[-1:] or [{}])[0].get("response_range", {}).get("kvs") or [{}]
        seen_value, seen_revision = unb64(kvs[0].get("value")), int_field(kvs[0], "mod_revision")
        if seen_value == nonce:  # an earlier copy of this very transaction landed
            slot.revision = seen_revision
            return Outcome(True, seen_revision, None)
        if seen_revision != slot.revision:
            raise StoreProtocolError(f"etcd receipt key {unb64(slot.key)!r} changed under us")
        return Outcome(False, 0, responses[: len(failure)])

    def _take(self) -> _Slot:
        if self._free:
            return self._free.pop()
        return _Slot(b64(f"{self.prefix}{next(self._slot_ids)}"))

    async def clear(self) -> None:
        """Delete every receipt key of this store."""
        self._free.clear()
        await self._call(
            "/v3/kv/deleterange", prefix_range(self.prefix), "receipt cleanup", replay_safe=True
        )
