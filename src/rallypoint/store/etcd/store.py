"""``EtcdStore``: the ``KeyValueStore`` protocol on etcd's v3 API (through its JSON gateway).

Design note
-----------
Keys live under ``/rallypoint/<run_id>/``; callers never see that prefix. Revisions are
etcd's: a key's revision is its ``mod_revision`` and ``range`` reports the header revision.

* Compare-and-set is one etcd transaction: compare the key's ``mod_revision`` (or its
  ``create_revision`` against 0 for "absent"), put or delete on success, read the key on
  failure so the result carries the current value and revision.
* ``add`` reads the counter, then commits ``value + amount`` in a transaction on the
  ``mod_revision`` it read (keeping the key's lease with ``ignore_lease``), and retries
  from the failure branch's fresh read when another writer came first.
* Watches are gateway streams (one connection each). A watch remembers the revision of
  the last event it delivered; when its connection breaks it is opened again, on the next
  endpoint if need be, from that revision + 1, so no event is lost or repeated.
  ``start_revision=N`` maps to etcd's inclusive ``start_revision=N + 1`` (with N capped
  at the current revision, since the built-in store delivers every later change whatever
  N is, while etcd would skip those before N + 1); a compacted start raises
  ``RevisionCompactedError``.
* Leases. The built-in store ends a connection's leases when the connection closes, so a
  killed agent's keys vanish at once. etcd has no connections to tie leases to, so this
  store behaves like an etcd "session": each lease it grants is an etcd lease whose TTL
  is ``min(ttl, session_ttl)`` (at least etcd's minimum, 1 s or more), kept alive by a
  task of this store while the caller's own TTL runs, and revoked by it when the caller's
  TTL runs out without a keep-alive. ``close`` revokes them all. A process that dies
  stops the refreshes, and etcd deletes its keys within ``session_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import math
import ssl
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from rallypoint.store._errors import (
    ErrorCode,
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreAuthError,
    StoreConnectionError,
    StoreError,
    StoreProtocolError,
    StoreRequestError,
)
from rallypoint.store._watch import WatchItem
from rallypoint.store.api import CasResult, RangeResult, held_lease
from rallypoint.store.messages import EventKind, KeyValue, WatchEvent

from ._http import Endpoint, Gateway, LineStream, _NotSent, gateway_error, translate

__all__ = ["DEFAULT_SESSION_TTL", "KEY_ROOT", "EtcdStore", "EtcdTls", "EtcdWatch"]

logger = logging.getLogger(__name__)

KEY_ROOT = "/rallypoint/"
"""Every run's keys live under ``KEY_ROOT + run_id + "/"``."""

DEFAULT_SESSION_TTL = 5.0
"""The longest etcd-side TTL of a lease: how soon a dead process's keys go away."""

_ENC = "utf-8"
_ERRORS = "surrogatepass"  # any Python str round-trips, as with the built-in store


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """TLS settings for https endpoints (paths to PEM files).

    Attributes:
        cacert: the CA bundle that signed the servers' certificates (None: system CAs).
        cert: this client's certificate, for etcd's ``--client-cert-auth``.
        key: the private key of ``cert`` (None when ``cert`` holds it too).
    """

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that checks the server and presents ``cert`` if given.

        Raises:
            StoreConnectionError: a file cannot be read or is not a certificate or key.
        """
        try:
            ctx = ssl.create_default_context(cafile=self.cacert)
            if self.cert is not None:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f"{k}={v}" for k, v in self._files().items())
            raise StoreConnectionError(f"cannot load the etcd TLS files ({files}): {exc}") from exc
        return ctx

    def _files(self) -> dict[str, str]:
        pairs = {"cacert": self.cacert, "cert": self.cert, "key": self.key}
        return {k: v for k, v in pairs.items() if v is not None}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode(_ENC, _ERRORS)).decode("ascii")


def _unb64(data: object) -> str:
    if data is None:
        return ""
    if not isinstance(data, str):
        raise StoreProtocolError(f"etcd sent a non-string key or value: {data!r}")
    try:
        return base64.b64decode(data, validate=True).decode(_ENC, _ERRORS)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreProtocolError(f"etcd sent a key or value that is not UTF-8: {exc}") from exc


def _int(obj: dict[str, Any], name: str) -> int:
    """An int64 field of the gateway's JSON (written as a string; absent means 0)."""
    raw = obj.get(name, 0)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StoreProtocolError(f"etcd sent {name}={raw!r}, not an integer") from None


def _prefix_end(key: bytes) -> bytes:
    """The range end that covers every key starting with ``key`` (etcd's ``WithPrefix``)."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


@dataclass(slots=True)
class _OwnedLease:
    ttl: float
    deadline: float
    refresh: float
    task: asyncio.Task[None] | None = None


class EtcdWatch:
    """The events of one etcd watch, in revision order; iterate with ``async for``.

    It follows the store across endpoints: when its stream breaks it reopens from the
    revision after the last event it delivered. Iteration raises the error that ended it
    (``StoreConnectionError`` when no endpoint answered within the store's timeout,
    ``RevisionCompactedError`` when the history it needs was compacted) and stops after
    ``cancel``.
    """

    def __init__(self, store: EtcdStore, watch_id: int, prefix: str, after: int | None) -> None:
        self._store = store
        self._id = watch_id
        self._key = store.full_key(prefix).encode(_ENC, _ERRORS)
        self._after = after  # the last revision already seen (None: from now)
        self._queue: asyncio.Queue[WatchItem] = asyncio.Queue()
        self._created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stream: LineStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._live = False

    @property
    def id(self) -> int:
        """The watch id (unique within its store)."""
        return self._id

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        item = await self._queue.get()
        if isinstance(item, WatchEvent):
            return item
        self._queue.put_nowait(item)  # keep the end visible to later calls
        if item is None:
            raise StopAsyncIteration
        raise item

    async def start(self) -> None:
        """Open the stream and wait until etcd confirms the watch (or refuses it)."""
        self._task = asyncio.create_task(self._run(), name=f"etcd-watch-{self._id}")
        try:
            async with asyncio.timeout(self._store.timeout):
                await asyncio.shield(self._created)
        except TimeoutError:
            await self._stop(None)
            raise StoreConnectionError(
                f"etcd did not confirm a watch within {self._store.timeout:g} s "
                f"({self._store.gateway.describe()})"
            ) from None
        except BaseException:
            await self._stop(None)
            raise

    async def cancel(self) -> None:
        """Stop the watch; iteration ends after the events already queued."""
        await self._stop(None)

    def fail(self, error: StoreError) -> None:
        """End the watch with ``error`` (the store was closed or lost)."""
        self._end(error)
        if self._task is not None:
            self._task.cancel()
        if self._stream is not None:
            self._stream.connection.abort()

    async def _stop(self, item: StoreError | None) -> None:
        self._end(item)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._stream is not None:
            self._stream.connection.abort()
        self._store.forget(self)

    def _end(self, item: StoreError | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(item)
        if not self._created.done():
            if item is None:
                self._created.set_exception(StoreConnectionError("the watch was cancelled"))
            else:
                self._created.set_exception(item)
            self._created.exception()  # retrieved: no "never retrieved" warning

    async def _run(self) -> None:
        try:
            await self._follow()
        except StoreError as exc:
            self._end(exc)
        finally:
            if self._stream is not None:
                self._stream.connection.abort()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        failures: dict[Endpoint, str] = {}
        lost_since: float | None = None
        backoff = 0.05
        while True:
            for endpoint in self._store.gateway.rotation():
                self._live = False
                try:
                    await self._stream_from(endpoint)
                except _NotSent as exc:
                    failures[endpoint] = f"cannot connect ({exc})"
                except StoreConnectionError as exc:
                    failures[endpoint] = str(exc)
                if self._stream is not None:
                    self._stream.connection.abort()
                    self._stream = None
                if self._live:  # it had worked: the outage starts now
                    failures = {endpoint: failures[endpoint]}
                    lost_since, backoff = None, 0.05
                    logger.info("etcd watch %d moving on: %s", self._id, failures[endpoint])
            now = loop.time()
            lost_since = now if lost_since is None else lost_since
            if not self._created.done() or now - lost_since > self._store.timeout:
                listing = "; ".join(f"{e}: {m}" for e, m in failures.items())
                raise StoreConnectionError(f"the etcd watch lost every endpoint: {listing}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    async def _stream_from(self, endpoint: Endpoint) -> None:
        create: dict[str, Any] = {
            "key": base64.b64encode(self._key).decode(),
            "range_end": base64.b64encode(_prefix_end(self._key)).decode(),
        }
        if self._after is not None:
            create["start_revision"] = str(self._after + 1)
        gateway = self._store.gateway
        self._stream = await gateway.stream("/v3/watch", {"create_request": create}, endpoint)
        while True:
            message = await self._stream.next()
            if message is None:
                raise StoreConnectionError(f"etcd at {endpoint} ended the watch stream")
            if "error" in message:
                error = gateway_error(200, message)
                raise translate(error, endpoint, "watch")
            result = message.get("result", {})
            if not isinstance(result, dict):
                raise StoreProtocolError(f"etcd at {endpoint} sent a bad watch message")
            if _int(result, "compact_revision"):
                raise RevisionCompactedError(
                    f"etcd at {endpoint} compacted the changes after revision {self._after} "
                    f"(compacted up to {_int(result, 'compact_revision')}); re-read with range"
                )
            if result.get("canceled"):
                reason = result.get("cancel_reason") or "no reason given"
                raise StoreRequestError(
                    ErrorCode.INVALID_ARGUMENT, f"etcd at {endpoint} cancelled the watch: {reason}"
                )
            if result.get("created"):
                if self._after is None:
                    self._after = _int(result.get("header", {}), "revision")
                gateway.prefer(endpoint)
                self._live = True
                if not self._created.done():
                    self._created.set_result(None)
            for raw in result.get("events", ()):
                self._deliver(raw)

    def _deliver(self, raw: dict[str, Any]) -> None:
        kv = raw.get("kv", {})
        revision = _int(kv, "mod_revision")
        if self._after is not None and revision <= self._after:
            return  # already delivered before a reconnect
        key = self._store.strip_key(_unb64(kv.get("key")))
        if raw.get("type", "PUT") == "DELETE":
            event = WatchEvent(self._id, key, None, revision, EventKind.DELETE)
        else:
            event = WatchEvent(self._id, key, _unb64(kv.get("value")), revision, EventKind.PUT)
        self._after = revision
        if not self._ended:
            self._queue.put_nowait(event)


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
        self._leases: dict[int, _OwnedLease] = {}

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
            session_ttl: the longest etcd-side TTL of a lease (see the module's note).
            https: force https (with system CAs when ``tls`` is None) or http.

        Raises:
            StoreConnectionError: no endpoint answered; the message names each one and
                why it failed (``StoreTimeoutError`` when one was too slow).
            StoreAuthError: etcd refused the user or password.
        """
        if not run_id or "\x00" in run_id:
            raise ValueError(f"bad run id {run_id!r}")
        if not (math.isfinite(session_ttl) and session_ttl >= 1):
            raise ValueError(f"session_ttl must be at least 1 s, not {session_ttl}")
        use_tls = tls is not None if https is None else https
        context = (tls or EtcdTls()).context() if use_tls else None
        gateway = Gateway([Endpoint(h, p) for h, p in endpoints], context, timeout)
        store = cls(gateway, run_id, timeout, session_ttl)
        try:
            if auth is not None:
                store._auth = auth
                await store._authenticate()
                gateway.reauth = store._authenticate
            await store._range_raw(store.prefix, count_only=True)
        except BaseException:
            await gateway.close()
            raise
        return store

    async def _authenticate(self) -> None:
        assert self._auth is not None
        user, password = self._auth
        self.gateway.token = None
        reply = await self.gateway.call(
            "/v3/auth/authenticate",
            {"name": user, "password": password},
            f"authentication as {user!r}",
            idempotent=True,
        )
        token = reply.get("token")
        if not isinstance(token, str) or not token:
            raise StoreAuthError(f"etcd gave no auth token to {user!r} (is auth enabled?)")
        self.gateway.token = token

    # --- keys --------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The etcd key of a store key."""
        return self.prefix + key

    def strip_key(self, full: str) -> str:
        """The store key of an etcd key under this run's prefix."""
        if not full.startswith(self.prefix):
            raise StoreProtocolError(f"etcd returned key {full!r} outside {self.prefix!r}")
        return full[len(self.prefix) :]

    @property
    def closed(self) -> bool:
        """True once closed (or aborted)."""
        return self._failure is not None

    def _check_open(self) -> None:
        if self._failure is not None:
            raise StoreConnectionError(str(self._failure)) from self._failure

    async def _call(
        self, path: str, payload: dict[str, Any], what: str, *, idempotent: bool
    ) -> dict[str, Any]:
        self._check_open()
        return await self.gateway.call(path, payload, what, idempotent=idempotent)

    async def _range_raw(self, full: str, *, count_only: bool = False) -> dict[str, Any]:
        key = full.encode(_ENC, _ERRORS)
        payload: dict[str, Any] = {
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(_prefix_end(key)).decode(),
        }
        if count_only:
            payload["count_only"] = True
        return await self._call("/v3/kv/range", payload, "range", idempotent=True)

    def _kv(self, kv: dict[str, Any]) -> KeyValue:
        return KeyValue(
            self.strip_key(_unb64(kv.get("key"))),
            _unb64(kv.get("value")),
            _int(kv, "mod_revision"),
        )

    async def get(self, key: str) -> KeyValue | None:
        """Return the key's value and mod revision, or None when absent."""
        reply = await self._call(
            "/v3/kv/range", {"key": _b64(self.full_key(key))}, f"get {key!r}", idempotent=True
        )
        kvs = reply.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def range(self, prefix: str) -> RangeResult:
        """Return every key starting with ``prefix`` and the current store revision."""
        reply = await self._range_raw(self.full_key(prefix))
        entries = tuple(self._kv(kv) for kv in reply.get("kvs") or [])
        return RangeResult(entries, _int(reply.get("header", {}), "revision"))

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
        request: dict[str, Any] = {"key": _b64(self.full_key(key)), "value": _b64(value)}
        if lease is not None:
            self._check_lease(lease)
            request["lease"] = str(lease)
        if expected_revision is None:
            reply = await self._call("/v3/kv/put", request, f"put {key!r}", idempotent=True)
            return CasResult(True, _int(reply.get("header", {}), "revision"), value)
        reply = await self._txn(key, expected_revision, {"request_put": request}, "put")
        if reply.get("succeeded"):
            return CasResult(True, _int(reply.get("header", {}), "revision"), value)
        return self._current(reply)

    async def delete(self, key: str, expected_revision: int | None = None) -> CasResult:
        """Delete a key under the same condition as ``put``; ok when a key was deleted."""
        request = {"key": _b64(self.full_key(key))}
        if expected_revision is None:
            reply = await self._call(
                "/v3/kv/deleterange", request, f"delete {key!r}", idempotent=False
            )
            return CasResult(_int(reply, "deleted") > 0, 0, None)
        reply = await self._txn(key, expected_revision, {"request_delete_range": request}, "delete")
        if reply.get("succeeded"):
            responses = reply.get("responses") or [{}]
            deleted = _int(responses[0].get("response_delete_range", {}), "deleted")
            return CasResult(deleted > 0, 0, None)
        return self._current(reply)

    async def _txn(
        self, key: str, expected: int, success: dict[str, Any], what: str
    ) -> dict[str, Any]:
        if expected < 0:
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, "expected_revision must be >= 0")
        full = _b64(self.full_key(key))
        if expected == 0:
            compare = {"key": full, "target": "CREATE", "create_revision": "0", "result": "EQUAL"}
        else:
            compare = {
                "key": full,
                "target": "MOD",
                "mod_revision": str(expected),
                "result": "EQUAL",
            }
        payload = {
            "compare": [compare],
            "success": [success],
            "failure": [{"request_range": {"key": full}}],
        }
        return await self._call("/v3/kv/txn", payload, f"{what} {key!r}", idempotent=False)

    def _current(self, failed_txn: dict[str, Any]) -> CasResult:
        responses = failed_txn.get("responses") or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return CasResult(False, 0, None)
        kv = self._kv(kvs[0])
        return CasResult(False, kv.revision, kv.value)

    async def add(self, key: str, amount: int = 1) -> int:
        """Add to the decimal counter at ``key`` (absent counts as 0); return the total.

        Raises:
            StoreRequestError: the key holds something other than a decimal integer
                (code ``NOT_AN_INTEGER``).
        """
        current = await self.get(key)
        full = _b64(self.full_key(key))
        while True:
            try:
                base = 0 if current is None else int(current.value)
            except ValueError:
                raise StoreRequestError(
                    ErrorCode.NOT_AN_INTEGER, f"key {key!r} does not hold an integer"
                ) from None
            total = base + amount
            put: dict[str, Any] = {"key": full, "value": _b64(str(total))}
            if current is not None:
                put["ignore_lease"] = True  # the key keeps its lease
            reply = await self._txn(
                key, 0 if current is None else current.revision, {"request_put": put}, "add to"
            )
            if reply.get("succeeded"):
                return total
            result = self._current(reply)
            current = None if result.value is None else KeyValue(key, result.value, result.revision)

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
            current = _int(
                (await self._range_raw(self.prefix, count_only=True)).get("header", {}), "revision"
            )
            start_revision = min(start_revision, current)
        watch = EtcdWatch(self, next(self._ids), prefix, start_revision)
        self._watches.add(watch)
        await watch.start()
        return watch

    def forget(self, watch: EtcdWatch) -> None:
        """Drop a finished watch from the store's books."""
        self._watches.discard(watch)

    # --- leases --------------------------------------------------------------------------

    def _check_lease(self, lease: int) -> None:
        owned = self._leases.get(lease)
        if owned is not None and asyncio.get_running_loop().time() >= owned.deadline:
            raise LeaseNotFoundError(f"lease {lease} has expired")

    async def lease_grant(self, ttl: float) -> int:
        """Create a lease that ends ``ttl`` seconds after its last keep-alive.

        The etcd lease behind it has a TTL of ``min(ttl, session_ttl)`` seconds (rounded
        up, and at least etcd's minimum), refreshed by this store while ``ttl`` runs.
        """
        if not (math.isfinite(ttl) and ttl > 0):
            raise StoreRequestError(ErrorCode.INVALID_ARGUMENT, f"ttl must be > 0, not {ttl}")
        etcd_ttl = max(1, math.ceil(min(ttl, self.session_ttl)))
        reply = await self._call(
            "/v3/lease/grant", {"TTL": str(etcd_ttl)}, "lease grant", idempotent=True
        )
        lease = _int(reply, "ID")
        granted = _int(reply, "TTL") or etcd_ttl
        now = asyncio.get_running_loop().time()
        owned = _OwnedLease(ttl, now + ttl, max(0.1, granted / 3))
        owned.task = asyncio.create_task(self._tend(lease, owned), name=f"etcd-lease-{lease}")
        self._leases[lease] = owned
        return lease

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

    async def _etcd_keepalive(self, lease: int) -> None:
        reply = await self._call(
            "/v3/lease/keepalive",
            {"ID": str(lease)},
            f"keep-alive of lease {lease}",
            idempotent=True,
        )
        result = reply.get("result", reply)
        if _int(result, "TTL") <= 0:
            raise LeaseNotFoundError(f"lease {lease} has ended (etcd no longer knows it)")

    async def _etcd_revoke(self, lease: int) -> None:
        await self._call(
            "/v3/lease/revoke", {"ID": str(lease)}, f"revoke of lease {lease}", idempotent=True
        )

    async def lease_keepalive(self, lease: int) -> None:
        """Restart the lease's TTL; raises ``LeaseNotFoundError`` if it has ended."""
        self._check_lease(lease)
        await self._etcd_keepalive(lease)
        owned = self._leases.get(lease)
        if owned is not None:
            owned.deadline = asyncio.get_running_loop().time() + owned.ttl

    async def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys."""
        owned = self._leases.pop(lease, None)
        if owned is not None and owned.task is not None:
            owned.task.cancel()
        await self._etcd_revoke(lease)

    def lease(
        self, ttl: float, keepalive_interval: float | None = None
    ) -> AbstractAsyncContextManager[int]:
        """Grant a lease, keep it alive, revoke it on exit (see ``held_lease``)."""
        return held_lease(self, ttl, keepalive_interval)

    # --- ending ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Revoke the leases this store granted, end its watches, close its connections."""
        if self._failure is not None:
            return
        leases = list(self._leases)
        for owned in self._leases.values():
            if owned.task is not None:
                owned.task.cancel()
        self._leases.clear()
        if leases:
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(min(self.timeout, 2.0)):
                    await asyncio.gather(
                        *(self._etcd_revoke(lease) for lease in leases), return_exceptions=True
                    )
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
        for owned in self._leases.values():
            if owned.task is not None:
                owned.task.cancel()
        self._leases.clear()
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
