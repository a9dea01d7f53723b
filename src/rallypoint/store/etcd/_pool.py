"""Keep-alive HTTP/1.1 connections to the etcd endpoints, and one request on one of them.

Design note
-----------
Each request takes an idle keep-alive connection to its endpoint (or opens one) and gives
it back once the whole reply is read. ``exchange`` raises ``NotSent`` only when the request
provably never left: the connection could not be opened, or a reused one was already broken
when the request was handed to the socket (the very first send failed, so no byte went
out). Any failure after that raises ``Lost``: etcd may have applied the request. A reused
keep-alive connection that breaks before answering is the usual stale-connection race, so a
request the caller marks ``replay_safe`` gets one more try on a fresh connection; any other
request is never sent twice. Choosing another endpoint is the gateway's job. This is where
socket and TLS errors of connecting enter the backend.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping

from rallypoint.store._errors import StoreConnectionError, StoreProtocolError

from ._http import IO_ERRORS, LINE_LIMIT, Connection, Endpoint, Lost, NotSent

_IDLE_PER_ENDPOINT = 16


class ConnectionPool:
    """Connections to a fixed set of endpoints: idle ones to reuse, busy ones to abort.

    Args:
        endpoints: every endpoint a connection may go to.
        ssl_context: TLS settings for https, or None for plain http.
    """

    def __init__(self, endpoints: list[Endpoint], ssl_context: ssl.SSLContext | None) -> None:
        self._ssl = ssl_context
        self._idle: dict[Endpoint, list[Connection]] = {e: [] for e in endpoints}
        self._busy: set[Connection] = set()
        self.closed = False

    async def open(self, endpoint: Endpoint) -> Connection:
        """A new connection to ``endpoint``.

        Raises:
            NotSent: it could not be opened (the message says why).
            StoreConnectionError: the pool was closed.
        """
        if self.closed:
            raise StoreConnectionError("the etcd store was closed")
        try:
            reader, writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=self._ssl,
                server_hostname=endpoint.host if self._ssl is not None else None,
                limit=LINE_LIMIT,
            )
        except ssl.SSLCertVerificationError as exc:
            raise NotSent(f"TLS certificate check failed: {exc.verify_message}") from exc
        except ssl.SSLError as exc:
            raise NotSent(f"TLS handshake failed: {exc.reason or exc}") from exc
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or repr(exc))
            raise NotSent(reason.lower()) from exc
        return Connection(endpoint, reader, writer)

    async def exchange(
        self,
        endpoint: Endpoint,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        replay_safe: bool,
    ) -> tuple[int, bytes]:
        """One request on one endpoint; reuse a keep-alive connection when there is one.

        Args:
            replay_safe: whether a second copy of the request would do no harm.

        Raises:
            NotSent: the request provably did not leave.
            Lost: it may have reached etcd, and the reply was lost.
        """
        conn = await self._take(endpoint)
        try:
            return await self._round_trip(conn, path, body, headers)
        except NotSent:
            pass  # a stale connection, found broken before any byte of the request left
        except Lost:
            if not (replay_safe and conn.reused and not conn.answered):
                raise
        return await self._round_trip(await self.open(endpoint), path, body, headers)

    async def _round_trip(
        self, conn: Connection, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """The status and body of one request on ``conn``."""
        self._busy.add(conn)
        try:
            if not conn.send(path, body, headers):
                raise NotSent("the connection was already broken")
            await conn.writer.drain()
            status, head = await conn.read_head()
            data = await conn.read_body(head)
        except (StoreProtocolError, NotSent):
            conn.abort()
            raise
        except (*IO_ERRORS, ValueError) as exc:
            conn.abort()
            raise Lost(repr(exc)) from exc
        except BaseException:
            conn.abort()
            raise
        finally:
            self._busy.discard(conn)
        if head.get("connection", "").lower() == "close":
            conn.abort()
        else:
            self._give_back(conn)
        return status, data

    async def _take(self, endpoint: Endpoint) -> Connection:
        idle = self._idle[endpoint]
        while idle:
            conn = idle.pop()
            if conn.usable:
                conn.reused = True
                return conn
            conn.abort()
        return await self.open(endpoint)

    def _give_back(self, conn: Connection) -> None:
        idle = self._idle[conn.endpoint]
        if self.closed or not conn.usable or len(idle) >= _IDLE_PER_ENDPOINT:
            conn.abort()
        else:
            idle.append(conn)

    def abort(self) -> None:
        """Drop every connection now."""
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
            idle.clear()
        for conn in list(self._busy):
            conn.abort()
        self._busy.clear()

    async def close(self) -> None:
        """Close every connection."""
        self.closed = True
        conns = [c for idle in self._idle.values() for c in idle]
        for idle in self._idle.values():
            idle.clear()
        for conn in list(self._busy):
            conn.abort()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
