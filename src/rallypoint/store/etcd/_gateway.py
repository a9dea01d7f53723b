"""Requests to an etcd cluster through its v3 JSON gateway, failing over between endpoints.

Design note
-----------
The gateway remembers the endpoint that last answered and starts there. A request that
provably never left (``NotSent``) moves on to the next endpoint. A request that may have
reached etcd but whose reply was lost (``Lost``) is sent again, elsewhere, only when the
caller marks it *replay safe* (a read, a keep-alive, or a write built so that a second copy
is harmless: see ``_receipts``); otherwise it is never sent twice, and
``EtcdOutcomeUnknownError`` says its outcome is unknown. etcd's "unavailable" answers are
classified by ``_translate``: those that guarantee the request was not applied (no leader
yet) are retried with a short backoff until the deadline, across endpoints, and those that
leave a write's outcome unknown (leader changed, request timed out) only for replay-safe
requests. A refused auth token is renewed once per call. Streams (watches) get a
connection of their own, outside the pool.

Together with ``_pool`` this is the one place where socket, TLS and JSON errors enter the
etcd backend; they are translated here, once, into the store's exception tree, naming the
endpoint.
"""

from __future__ import annotations

import asyncio
import enum
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rallypoint.store._errors import StoreConnectionError, StoreTimeoutError

from ._http import IO_ERRORS, Endpoint, LineStream, Lost, NotSent, parse_object
from ._pool import ConnectionPool
from ._translate import (
    EtcdOutcomeUnknownError,
    Refusal,
    classify,
    gateway_error,
    may_retry,
    translate,
)


class Call(Protocol):
    """The shape of ``Gateway.call``, as the store's parts are given it."""

    async def __call__(
        self, path: str, payload: dict[str, Any], what: str, *, replay_safe: bool
    ) -> dict[str, Any]:
        """Send ``payload`` to ``path``; return etcd's reply."""
        ...


class _Next(enum.Enum):
    """What a call does after a pass over every endpoint gave no reply."""

    AT_ONCE = enum.auto()  # a new auth token was fetched
    AFTER_BACKOFF = enum.auto()  # etcd answered, but was unavailable


@dataclass(slots=True)
class _Call:
    """One call in progress: the request and what each endpoint did with it."""

    path: str
    body: bytes
    what: str
    replay_safe: bool
    failures: dict[Endpoint, str] = field(default_factory=dict)
    trying: Endpoint | None = None
    reauthenticated: bool = False

    def timed_out(self, timeout: float) -> StoreTimeoutError:
        """The error for a call that ran out of time."""
        where = f" (waiting for {self.trying})" if self.trying is not None else ""
        tried = "; ".join(f"{e}: {m}" for e, m in self.failures.items())
        return StoreTimeoutError(
            f"etcd did not answer {self.what} within {timeout:g} s{where}"
            + (f"; earlier failures: {tried}" if tried else "")
        )

    def unreachable(self, scheme: str) -> StoreConnectionError:
        """The error for a call no endpoint answered."""
        listing = "; ".join(f"{scheme}://{e}: {m}" for e, m in self.failures.items())
        return StoreConnectionError(f"cannot reach etcd for {self.what}: {listing}")


class Gateway:
    """Requests to an etcd cluster through its v3 JSON gateway, with failover.

    Args:
        endpoints: the client endpoints, tried in order (the last one that answered first).
        ssl_context: TLS settings for https, or None for plain http.
        timeout: seconds allowed for each request, failover included.
    """

    def __init__(
        self, endpoints: list[Endpoint], ssl_context: ssl.SSLContext | None, timeout: float
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.token: str | None = None
        self._ssl = ssl_context
        self._current = 0
        self._pool = ConnectionPool(self.endpoints, ssl_context)
        self.reauth: Callable[[], Awaitable[None]] | None = None
        """Fetches a new auth token (set by the store when it authenticates)."""

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return "http" if self._ssl is None else "https"

    def describe(self) -> str:
        """The endpoints, for messages."""
        return ", ".join(f"{self.scheme}://{e}" for e in self.endpoints)

    def rotation(self) -> list[Endpoint]:
        """Every endpoint, starting at the one that answered last."""
        n = len(self.endpoints)
        return [self.endpoints[(self._current + i) % n] for i in range(n)]

    def prefer(self, endpoint: Endpoint) -> None:
        """Start the next requests at ``endpoint``."""
        self._current = self.endpoints.index(endpoint)

    def headers(self) -> dict[str, str]:
        """Headers every request carries (the auth token, once authenticated)."""
        return {} if self.token is None else {"Authorization": self.token}

    async def call(
        self, path: str, payload: dict[str, Any], what: str, *, replay_safe: bool
    ) -> dict[str, Any]:
        """Send ``payload`` to ``path``, failing over between endpoints; return the reply.

        Args:
            path: the gateway path, such as ``/v3/kv/range``.
            payload: the JSON request.
            what: the operation, for messages.
            replay_safe: whether a second copy of the request would do no harm, so that it
                may be sent again after its reply was lost.

        Raises:
            StoreConnectionError: no endpoint could be reached (each one's failure is named).
            EtcdOutcomeUnknownError: a request that is not replay safe may have been applied
                (its reply was lost, or etcd timed out); it was not sent again.
            StoreTimeoutError: no answer within the timeout.
            StoreError: etcd refused the request (translated by ``translate``).
        """
        call = _Call(path, json.dumps(payload).encode(), what, replay_safe)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._until_answered(call)
        except TimeoutError:
            raise call.timed_out(self.timeout) from None

    async def _until_answered(self, call: _Call) -> dict[str, Any]:
        backoff = 0.05
        while True:
            outcome = await self._pass(call)
            if isinstance(outcome, dict):
                return outcome
            if outcome is _Next.AFTER_BACKOFF:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)

    async def _pass(self, call: _Call) -> dict[str, Any] | _Next:
        """Try every endpoint once; the reply, or what to do next."""
        answered = False
        for endpoint in self.rotation():
            if self._pool.closed:
                raise StoreConnectionError("the etcd store was closed")
            call.trying = endpoint
            answer = await self._send(call, endpoint)
            if answer is None:
                continue
            answered = True
            self.prefer(endpoint)
            outcome = await self._judge(call, endpoint, *answer)
            if outcome is not None:
                return outcome
        if not answered:
            raise call.unreachable(self.scheme)
        return _Next.AFTER_BACKOFF

    async def _send(self, call: _Call, endpoint: Endpoint) -> tuple[int, bytes] | None:
        """etcd's status and body, or None (the failure noted) to try the next endpoint."""
        try:
            return await self._pool.exchange(
                endpoint, call.path, call.body, self.headers(), replay_safe=call.replay_safe
            )
        except NotSent as exc:
            call.failures[endpoint] = f"cannot connect ({exc})"
            return None
        except Lost as exc:
            call.failures[endpoint] = f"connection lost ({exc})"
            if call.replay_safe:
                return None
            raise EtcdOutcomeUnknownError(
                f"lost the connection to etcd at {endpoint} during {call.what}; "
                f"its outcome is unknown (not sent again): {exc}"
            ) from None

    async def _judge(
        self, call: _Call, endpoint: Endpoint, status: int, data: bytes
    ) -> dict[str, Any] | _Next | None:
        """The reply, what to do next, or None (the failure noted) to try the next endpoint."""
        reply = parse_object(data, endpoint) if data.strip() else {}
        if status == 200 and "error" not in reply:
            return reply
        error = gateway_error(status, reply)
        refusal = classify(error)
        if refusal is Refusal.STALE_TOKEN and self.reauth is not None and not call.reauthenticated:
            call.reauthenticated = True
            await self.reauth()
            return _Next.AT_ONCE
        if may_retry(refusal, call.replay_safe):
            call.failures[endpoint] = error.message
            return None
        raise translate(error, endpoint, call.what)

    async def stream(self, path: str, payload: dict[str, Any], endpoint: Endpoint) -> LineStream:
        """Open a streaming request (a watch) on ``endpoint``; its connection is its own.

        Raises:
            NotSent: the endpoint cannot be reached.
            StoreError: etcd refused it (translated).
        """
        conn = await self._pool.open(endpoint)
        try:
            conn.send(path, json.dumps(payload).encode(), self.headers())
            await conn.writer.drain()
            status, head = await conn.read_head()
            if status != 200:
                data = await conn.read_body(head)
                reply = parse_object(data, endpoint) if data.strip() else {}
                raise translate(gateway_error(status, reply), endpoint, "watch")
        except IO_ERRORS as exc:
            conn.abort()
            raise NotSent(repr(exc)) from exc
        except BaseException:
            conn.abort()
            raise
        return LineStream(conn, head)

    def abort(self) -> None:
        """Drop every connection now."""
        self._pool.abort()

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()
