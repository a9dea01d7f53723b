"""The leases an etcd store granted, kept alive as an etcd "session".

Design note
-----------
The built-in store ends a connection's leases when the connection closes, so a killed
agent's keys vanish at once. etcd has no connections to tie leases to, so the etcd store
behaves like an etcd "session": each lease it grants is an etcd lease whose TTL is
``min(ttl, session_ttl)`` (at least etcd's minimum, 1 s or more), kept alive by a task of
this keeper while the caller's own TTL runs, and revoked by it when the caller's TTL runs
out without a keep-alive. ``revoke_all`` (the store's ``close``) revokes them all. A
process that dies stops the refreshes, and etcd deletes its keys within ``session_ttl``
seconds.

Every lease call may be sent twice: a grant names its own random ID (a copy that finds the
lease already there was preceded by the first), a keep-alive only restarts a TTL, and a
revoke sent again finds the lease gone (``LeaseNotFoundError``, which callers ending a
lease ignore).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from dataclasses import dataclass

from rallypoint.store._errors import (
    ErrorCode,
    LeaseNotFoundError,
    StoreError,
    StoreRequestError,
)

from ._codec import int_field
from ._gateway import Call
from ._translate import LeaseExistsError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _OwnedLease:
    ttl: float
    deadline: float
    refresh: float
    task: asyncio.Task[None] | None = None


class LeaseKeeper:
    """Grants, refreshes and revokes one store's leases.

    Args:
        call: sends one request to etcd (the store's ``Gateway.call``, checked open).
        session_ttl: the longest etcd-side TTL of a lease.
    """

    def __init__(self, call: Call, session_ttl: float) -> None:
        self._call = call
        self._session_ttl = session_ttl
        self._leases: dict[int, _OwnedLease] = {}

    def check(self, lease: int) -> None:
        """Raise ``LeaseNotFoundError`` if ``lease`` is ours and its TTL ran out."""
        owned = self._leases.get(lease)
        if owned is not None and asyncio.get_running_loop().time() >= owned.deadline:
            raise LeaseNotFoundError(f"lease {lease} has expired")

    async def grant(self, ttl: float) -> int:
        """Create a lease that ends ``ttl`` seconds after its last keep-alive."""
        if not (math.isfinite(ttl) and ttl > 0):
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, f"ttl must be > 0, not {ttl}")
        etcd_ttl = max(1, math.ceil(min(ttl, self._session_ttl)))
        lease, granted = await self._etcd_grant(etcd_ttl)
        now = asyncio.get_running_loop().time()
        owned = _OwnedLease(ttl, now + ttl, max(0.1, granted / 3))
        owned.task = asyncio.create_task(self._tend(lease, owned), name=f"etcd-lease-{lease}")
        self._leases[lease] = owned
        return lease

    async def keepalive(self, lease: int) -> None:
        """Restart the lease's TTL; raises ``LeaseNotFoundError`` if it has ended."""
        self.check(lease)
        await self._etcd_keepalive(lease)
        owned = self._leases.get(lease)
        if owned is not None:
            owned.deadline = asyncio.get_running_loop().time() + owned.ttl

    async def revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys."""
        owned = self._leases.pop(lease, None)
        if owned is not None and owned.task is not None:
            owned.task.cancel()
        await self._etcd_revoke(lease)

    async def revoke_all(self, timeout: float) -> None:
        """Stop refreshing, then revoke every lease, giving up after ``timeout`` seconds."""
        leases = self.stop()
        if leases:
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(
                        *(self._etcd_revoke(lease) for lease in leases), return_exceptions=True
                    )

    def stop(self) -> list[int]:
        """Stop refreshing every lease and forget them; return their ids."""
        leases = list(self._leases)
        for owned in self._leases.values():
            if owned.task is not None:
                owned.task.cancel()
        self._leases.clear()
        return leases

    async def _tend(self, lease: int, owned: _OwnedLease) -> None:
        """Refresh the etcd lease while the caller's TTL runs; revoke it when it runs out."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now >= owned.deadline:
                break
            await asyncio.sleep(min(owned.deadline - now, owned.refresh))
            if loop.time() < owned.deadline:
                try:
                    await self._etcd_keepalive(lease)
                except LeaseNotFoundError:
                    self._leases.pop(lease, None)
                    return
                except StoreError as exc:
                    logger.warning("etcd lease %d not refreshed (will retry): %s", lease, exc)
        self._leases.pop(lease, None)
        with contextlib.suppress(StoreError):
            await self._etcd_revoke(lease)

    async def _etcd_grant(self, etcd_ttl: int) -> tuple[int, int]:
        """A new etcd lease with an ID of our choosing: its ID and granted TTL.

        Choosing the ID makes the grant replay safe: if a copy sent again finds the lease
        already there, the first copy created it (a random 62-bit ID is not someone else's).
        """
        lease = secrets.randbits(62) | 1
        request = {"TTL": str(etcd_ttl), "ID": str(lease)}
        try:
            reply = await self._call("/v3/lease/grant", request, "lease grant", replay_safe=True)
        except LeaseExistsError:
            return lease, etcd_ttl
        return lease, int_field(reply, "TTL") or etcd_ttl

    async def _etcd_keepalive(self, lease: int) -> None:
        reply = await self._call(
            "/v3/lease/keepalive",
            {"ID": str(lease)},
            f"keep-alive of lease {lease}",
            replay_safe=True,
        )
        result = reply.get("result", reply)
        if int_field(result, "TTL") <= 0:
            raise LeaseNotFoundError(f"lease {lease} has ended (etcd no longer knows it)")

    async def _etcd_revoke(self, lease: int) -> None:
        await self._call(
            "/v3/lease/revoke", {"ID": str(lease)}, f"revoke of lease {lease}", replay_safe=True
        )
