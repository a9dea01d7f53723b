"""``EtcdStore``: the ``KeyValueStore`` protocol on etcd's v3 API (through its JSON gateway).

Design note
-----------
The store is a facade over its parts, each in its own module: ``Gateway`` (``_gateway``)
sends requests with failover, ``KeySpace`` (``_kv``) holds the KV operations and
compare-and-set, ``LeaseKeeper`` (``_leases``) runs leases as an etcd "session", and
``EtcdWatch`` (``_watches``) follows a watch across endpoints. The store owns their
lifetime: it authenticates on connect, and ``close`` or ``abort`` ends the leases, the
watches and the connections, after which every call raises ``StoreConnectionError``.
``Receipts`` (``_receipts``) guard every write so that none is applied twice when its
request is sent again after a lost reply; ``close`` deletes them (``abort`` leaves them).

Keys live under ``/rallypoint/<run_id>/``; callers never see that prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from rallypoint.store._errors import (
    ErrorCode,
    StoreAuthError,
    StoreConnectionError,
    StoreError,
    StoreRequestError,
)
from rallypoint.store.api import CasResult, RangeResult, held_lease
from rallypoint.store.messages import KeyValue

from ._codec import header_revision
from ._gateway import Gateway
from ._http import Endpoint
from ._kv import KeySpace
from ._leases import LeaseKeeper
from ._receipts import Receipts
from ._tls import EtcdTls
from ._watches import EtcdWatch

__all__ = ["DEFAULT_SESSION_TTL", "KEY_ROOT", "EtcdStore", "EtcdTls", "EtcdWatch"]

KEY_ROOT = "/rallypoint/"
"""Every run's keys live under ``KEY_ROOT + run_id + "/"``."""

DEFAULT_SESSION_TTL = 5.0
"""The longest etcd-side TTL of a lease: how soon a dead process's keys go away."""


class EtcdStore:
    """A job's keys in an etcd cluster; create it with ``await EtcdStore.connect(...)``."""

    def __init__(self, gateway: Gateway, run_id: str, timeout: float, session_ttl: float) -> None:
        self.gateway = gateway
        self.timeout = timeout
        self.session_ttl = session_ttl
        self.prefix = f"{KEY_ROOT}{run_id}/"
        self._auth: tuple[str, str] | None = None
        self._failure: StoreError | None = None
        self._ids = itertools.count(1)
        self._watches: set[EtcdWatch] = set()
        self._leases = LeaseKeeper(self._call, session_ttl)
        self._receipts = Receipts(self._call, f"{KEY_ROOT}{run_id}\x00receipts/")
        self._keys = KeySpace(self._call, self.prefix, self._leases, self._receipts)

    @classmethod
    async def connect(
        cls,
        endpoints: Sequence[tuple[str, int]],
        run_id: str,
        *,
        tls: EtcdTls | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
        session_ttl: float = DEFAULT_SESSION_TTL,
        https: bool | None = None,
    ) -> EtcdStore:
        """Check that etcd answers (and authenticate), then return the store.

        Args:
            endpoints: the etcd client endpoints as ``(host, port)``; any of them may serve.
            run_id: the job's run id; keys live under ``/rallypoint/<run_id>/``.
            tls: TLS files; given, the endpoints are spoken to over https.
            auth: etcd user name and password, when etcd has auth enabled.
            timeout: seconds allowed for connecting, and for each request later.
            session_ttl: the longest etcd-side TTL of a lease (see ``_leases``).
            https: force https (with system CAs when ``tls`` is None) or http.

        Raises:
            StoreConnectionError: no endpoint answered; the message names each one and
                why it failed (``StoreTimeoutError`` when one was too slow).
            StoreAuthError: etcd refused the user or password.
        """
        _check_settings(run_id, session_ttl)
        use_tls = tls is not None if https is None else https
        context = (tls or EtcdTls()).context() if use_tls else None
        gateway = Gateway([Endpoint(h, p) for h, p in endpoints], context, timeout)
        store = cls(gateway, run_id, timeout, session_ttl)
        try:
            await store._start(auth)
        except BaseException:
            await gateway.close()
            raise
        return store

    async def _start(self, auth: tuple[str, str] | None) -> None:
        """Authenticate if asked to, and check that etcd answers."""
        if auth is not None:
            self._auth = auth
            await self._authenticate()
            self.gateway.reauth = self._authenticate
        await self._keys.probe()

    async def _authenticate(self) -> None:
        assert self._auth is not None
        user, password = self._auth
        self.gateway.token = None
        reply = await self.gateway.call(
            "/v3/auth/authenticate",
            {"name": user, "password": password},
            f"authentication as {user!r}",
            replay_safe=True,
        )
        token = reply.get("token")
        if not isinstance(token, str) or not token:
            raise StoreAuthError(f"etcd gave no auth token to {user!r} (is auth enabled?)")
        self.gateway.token = token

    # --- keys --------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The etcd key of a store key."""
        return self._keys.full_key(key)

    def strip_key(self, full: str) -> str:
        """The store key of an etcd key under this run's prefix."""
        return self._keys.strip_key(full)

    @property
    def closed(self) -> bool:
        """True once closed (or aborted)."""
        return self._failure is not None

    def _check_open(self) -> None:
        if self._failure is not None:
            raise StoreConnectionError(str(self._failure)) from self._failure

    async def _call(
        self, path: str, payload: dict[str, Any], what: str, *, replay_safe: bool
    ) -> dict[str, Any]:
        self._check_open()
        return await self.gateway.call(path, payload, what, replay_safe=replay_safe)

    async def get(self, key: str) -> KeyValue | None:
        """Return the key's value and mod revision, or None when absent."""
        return await self._keys.get(key)

    async def range(self, prefix: str) -> RangeResult:
        """Return every key starting with ``prefix`` and the current store revision."""
        return await self._keys.range(prefix)

    async def put(
        self,
        key: str,
        value: str,
        expected_revision: int | None = None,
        lease: int | None = None,
    ) -> CasResult:
        """Set a key; ``expected_revision`` None = always, 0 = if absent, N = if at N.

        Raises:
            LeaseNotFoundError: ``lease`` has ended.
        """
        return await self._keys.put(key, value, expected_revision, lease)

    async def delete(self, key: str, expected_revision: int | None = None) -> CasResult:
        """Delete a key under the same condition as ``put``; ok when a key was deleted."""
        return await self._keys.delete(key, expected_revision)

    async def add(self, key: str, amount: int = 1) -> int:
        """Add to the decimal counter at ``key`` (absent counts as 0); return the total.

        Raises:
            StoreRequestError: the key holds something other than a decimal integer
                (code ``NOT_AN_INTEGER``).
        """
        return await self._keys.add(key, amount)

    # --- watches -----------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int | None = None) -> EtcdWatch:
        """Stream every later change under ``prefix``; replay those after ``start_revision``.

        Raises:
            RevisionCompactedError: etcd no longer keeps changes that old.
        """
        self._check_open()
        if start_revision is not None and start_revision < 0:
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, "start_revision must be >= 0")
        if start_revision is not None:
            # As with the built-in store, a start at or past the current revision still
            # delivers every later change; etcd's start_revision would skip those before it.
            current = header_revision(await self._keys.probe())
            start_revision = min(start_revision, current)
        watch = EtcdWatch(self, next(self._ids), prefix, start_revision)
        self._watches.add(watch)
        await watch.start()
        return watch

    def forget(self, watch: EtcdWatch) -> None:
        """Drop a finished watch from the store's books."""
        self._watches.discard(watch)

    # --- leases --------------------------------------------------------------------------

    async def lease_grant(self, ttl: float) -> int:
        """Create a lease that ends ``ttl`` seconds after its last keep-alive.

        The etcd lease behind it has a TTL of ``min(ttl, session_ttl)`` seconds (rounded
        up, and at least etcd's minimum), refreshed by this store while ``ttl`` runs.
        """
        return await self._leases.grant(ttl)

    async def lease_keepalive(self, lease: int) -> None:
        """Restart the lease's TTL; raises ``LeaseNotFoundError`` if it has ended."""
        await self._leases.keepalive(lease)

    async def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys."""
        await self._leases.revoke(lease)

    def lease(
        self, ttl: float, keepalive_interval: float | None = None
    ) -> AbstractAsyncContextManager[int]:
        """Grant a lease, keep it alive, revoke it on exit (see ``held_lease``)."""
        return held_lease(self, ttl, keepalive_interval)

    # --- ending ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Revoke the leases this store granted, delete its receipts, end its watches and
        close its connections."""
        if self._failure is not None:
            return
        await self._leases.revoke_all(min(self.timeout, 2.0))
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(min(self.timeout, 2.0)):
                await self._receipts.clear()
        self._end(StoreConnectionError("the etcd store was closed"))
        await self.gateway.close()

    async def abort(self) -> None:
        """Drop every connection at once and stop refreshing leases, revoking nothing.

        What a killed process does: etcd deletes this store's leased keys once their
        etcd-side TTL (at most ``session_ttl``) runs out. Later calls raise
        ``StoreConnectionError``.
        """
        if self._failure is not None:
            return
        self._leases.stop()
        self._end(StoreConnectionError("the etcd store was aborted"))
        self.gateway.abort()

    def _end(self, error: StoreError) -> None:
        self._failure = error
        for watch in list(self._watches):
            watch.fail(error)
        self._watches.clear()

    async def __aenter__(self) -> EtcdStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _check_settings(run_id: str, session_ttl: float) -> None:
    """Raise ``ValueError`` for a run id or session TTL that cannot work."""
    if not run_id or "\x00" in run_id:
        raise ValueError(f"bad run id {run_id!r}")
    if not (math.isfinite(session_ttl) and session_ttl >= 1):
        raise ValueError(f"session_ttl must be at least 1 s, not {session_ttl}")
