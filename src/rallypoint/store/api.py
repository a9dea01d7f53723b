"""What a rendezvous needs from a key-value store, as protocols and result values.

``StoreClient`` (our TCP store) satisfies ``KeyValueStore``; another backend (etcd, an
in-memory fake) does so by providing the same methods with the same semantics, which
``tests/contract`` checks for every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from rallypoint.store._errors import StoreError
from rallypoint.store.messages import KeyValue, WatchEvent

logger = logging.getLogger(__name__)

__all__ = ["CasResult", "KeyValueStore", "RangeResult", "WatchStream", "held_lease"]


@dataclass(frozen=True, slots=True)
class CasResult:
    """Outcome of a compare-and-set put or delete.

    Attributes:
        ok: whether the condition held and the change was made.
        revision: the key's mod revision afterwards (0 when absent).
        value: the key's value afterwards (None when absent).
    """

    ok: bool
    revision: int
    value: str | None


@dataclass(frozen=True, slots=True)
class RangeResult:
    """The keys under a prefix, sorted by key, and the store revision they were read at.

    Attributes:
        entries: the keys with their values and mod revisions.
        revision: the store's revision when read; watch from it to miss nothing.
    """

    entries: tuple[KeyValue, ...]
    revision: int


class WatchStream(Protocol):
    """The events of one watch, in revision order; iterate with ``async for``."""

    @property
    def id(self) -> int:
        """The watch id the store assigned."""
        ...

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        """Return the stream itself."""
        ...

    async def __anext__(self) -> WatchEvent:
        """Wait for the next event; raises the connection's error if it is lost."""
        ...

    async def cancel(self) -> None:
        """Stop the watch; iteration then ends."""
        ...


class KeyValueStore(Protocol):
    """A revisioned key-value store with compare-and-set, leases and watches."""

    async def get(self, key: str) -> KeyValue | None:
        """Return the key's value and mod revision, or None when absent."""
        ...

    async def range(self, prefix: str) -> RangeResult:
        """Return every key starting with ``prefix`` and the current store revision."""
        ...

    async def put(
        self,
        key: str,
        value: str,
        expected_revision: int | None = None,
        lease: int | None = None,
    ) -> CasResult:
        """Set a key; ``expected_revision`` None = always, 0 = if absent, N = if at N."""
        ...

    async def delete(self, key: str, expected_revision: int | None = None) -> CasResult:
        """Delete a key under the same condition as ``put``; ok when a key was deleted."""
        ...

    async def add(self, key: str, amount: int = 1) -> int:
        """Add to the decimal counter at ``key`` (absent counts as 0); return the total."""
        ...

    async def watch(self, prefix: str, start_revision: int | None = None) -> WatchStream:
        """Stream every later change under ``prefix`` (after ``start_revision`` if given)."""
        ...

    async def lease_grant(self, ttl: float) -> int:
        """Create a lease that ends ``ttl`` seconds after its last keep-alive."""
        ...

    async def lease_keepalive(self, lease: int) -> None:
        """Restart the lease's TTL."""
        ...

    async def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys."""
        ...

    def lease(
        self, ttl: float, keepalive_interval: float | None = None
    ) -> AbstractAsyncContextManager[int]:
        """Grant a lease, keep it alive in the background, and revoke it on exit."""
        ...

    async def close(self) -> None:
        """Close the connection; leases it granted end at once."""
        ...


@contextlib.asynccontextmanager
async def held_lease(
    store: KeyValueStore, ttl: float, keepalive_interval: float | None = None
) -> AsyncIterator[int]:
    """Grant a lease on ``store``, keep it alive from a task this context owns, revoke it on exit.

    Every backend's ``lease()`` is this.

    Args:
        store: the store that grants the lease.
        ttl: the lease's TTL in seconds.
        keepalive_interval: seconds between keep-alives (``ttl / 3`` by default).

    Yields:
        The lease id.
    """
    lease_id = await store.lease_grant(ttl)
    interval = ttl / 3 if keepalive_interval is None else keepalive_interval
    keeper = asyncio.create_task(_keep_alive(store, lease_id, interval))
    try:
        yield lease_id
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        with contextlib.suppress(StoreError):
            await store.lease_revoke(lease_id)


async def _keep_alive(store: KeyValueStore, lease_id: int, interval: float) -> None:
    try:
        while True:
            await asyncio.sleep(interval)
            await store.lease_keepalive(lease_id)
    except StoreError as exc:
        logger.warning("store lease %d no longer kept alive: %s", lease_id, exc)
