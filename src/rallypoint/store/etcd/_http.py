"""A minimal HTTP/1.1 client for the etcd v3 JSON gateway, on asyncio streams (stdlib only).

Design note
-----------
Each request takes an idle keep-alive connection to the current endpoint (or opens one),
writes one ``POST`` with a JSON body, and reads one response (``Content-Length`` or
chunked, trailers included). Streams (watches) get a connection of their own, read line by
line: the gateway writes one JSON object per line.

Failover: the gateway remembers the endpoint that last answered and starts there. A
request that could not be sent (connection refused, reset while connecting, or a stale
keep-alive connection that closed before answering anything) moves on to the next
endpoint. A request that was sent but whose reply was lost is retried elsewhere only when
it is *idempotent*; otherwise its outcome is unknown and ``StoreConnectionError`` says so.
etcd's "unavailable" answers (no leader yet, leader changed, request timed out) are
retried with a short backoff until the deadline, across endpoints.

This is the one place where socket, TLS and JSON errors enter the etcd backend; they are
translated here, once, into the store's exception tree, naming the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
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
    StoreTimeoutError,
)

logger = logging.getLogger(__name__)

_MAX_BODY = 256 * 1024 * 1024
_MAX_HEADERS = 100
_LINE_LIMIT = 64 * 1024 * 1024  # one JSON line of a stream (a watch message)
_IDLE_PER_ENDPOINT = 16
_IO_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)

# gRPC status codes the gateway reports in its error bodies.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_PERMISSION_DENIED = 7
_FAILED_PRECONDITION = 9
_OUT_OF_RANGE = 11
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16

# Unavailable answers that guarantee the request was not applied, so even a write may go
# again. Others ("leader changed", "request timed out") leave a write's outcome unknown.
_NOT_APPLIED = ("no leader", "too many requests", "not capable", "stopped")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL's host and port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class _NotSent(Exception):
    """The request never reached the server (safe to send again anywhere)."""


class _Lost(Exception):
    """The request was sent, then the connection broke before the whole reply came."""


class GatewayError(Exception):
    """An error answer of the gateway (HTTP status, gRPC code and message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Connection:
    """One HTTP/1.1 connection to an endpoint."""

    def __init__(
        self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.answered = False

    @property
    def usable(self) -> bool:
        """False once the peer closed the connection or we did."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    def abort(self) -> None:
        """Drop the connection at once, without a goodbye."""
        transport = self.writer.transport
        transport.abort()

    async def close(self) -> None:
        """Close politely (and quickly)."""
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(0.5):
                await self.writer.wait_closed()

    def send(self, path: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Write one POST request (the caller drains)."""
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self.endpoint}",
            "Content-Type: application/json",
            "Accept: application/json",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
            "",
            "",
        ]
        self.writer.write("\r\n".join(lines).encode("latin-1") + body)

    async def read_head(self) -> tuple[int, dict[str, str]]:
        """Read the status line and headers."""
        self.answered = False
        status_line = await self._line()
        self.answered = True
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise StoreProtocolError(
                f"etcd at {self.endpoint} answered something other than HTTP/1.1: "
                f"{status_line[:80]!r}"
            )
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = await self._line()
            if not line:
                return int(parts[1]), headers
            name, sep, value = line.partition(":")
            if not sep:
                raise StoreProtocolError(f"etcd at {self.endpoint}: bad header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        raise StoreProtocolError(f"etcd at {self.endpoint}: too many response headers")

    async def read_body(self, headers: Mapping[str, str]) -> bytes:
        """Read a whole body, by Content-Length or chunks."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            total = 0
            while (chunk := await self.read_chunk()) is not None:
                total += len(chunk)
                if total > _MAX_BODY:
                    raise StoreProtocolError(f"etcd at {self.endpoint}: reply too large")
                parts.append(chunk)
            return b"".join(parts)
        length_text = headers.get("content-length")
        if length_text is None or not length_text.isdigit():
            raise StoreProtocolError(f"etcd at {self.endpoint}: reply has no usable length")
        length = int(length_text)
        if length > _MAX_BODY:
            raise StoreProtocolError(f"etcd at {self.endpoint}: reply too large")
        return await self.reader.readexactly(length)

    async def read_chunk(self) -> bytes | None:
        """Read the next chunk of a chunked body; None after the last (trailers consumed)."""
        size_line = await self._line()
        size_text = size_line.split(";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise StoreProtocolError(
                f"etcd at {self.endpoint}: bad chunk size {size_line[:40]!r}"
            ) from None
        if size == 0:
            while await self._line():  # trailers, up to the empty line
                pass
            return None
        if size > _MAX_BODY:
            raise StoreProtocolError(f"etcd at {self.endpoint}: chunk too large")
        data = await self.reader.readexactly(size)
        if await self.reader.readexactly(2) != b"\r\n":
            raise StoreProtocolError(f"etcd at {self.endpoint}: chunk not followed by CRLF")
        return data

    async def _line(self) -> str:
        line = await self.reader.readuntil(b"\n")
        return line.decode("latin-1").rstrip("\r\n")


class LineStream:
    """The newline-separated JSON objects of a streamed (chunked) response."""

    def __init__(self, connection: Connection, headers: Mapping[str, str]) -> None:
        self.connection = connection
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self._buffer = bytearray()
        self._ended = False

    async def next(self) -> dict[str, Any] | None:
        """The next object, or None when the stream ended cleanly.

        Raises:
            StoreConnectionError: the connection broke.
            StoreProtocolError: the stream is not JSON lines.
        """
        endpoint = self.connection.endpoint
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if line.strip():
                    return _parse_object(line, endpoint)
                continue
            if self._ended:
                if self._buffer.strip():
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return _parse_object(line, endpoint)
                return None
            try:
                if self._chunked:
                    chunk = await self.connection.read_chunk()
                else:
                    chunk = await self.connection.reader.read(64 * 1024) or None
            except _IO_ERRORS as exc:
                raise StoreConnectionError(
                    f"lost the stream from etcd at {endpoint}: {exc!r}"
                ) from exc
            if chunk is None:
                self._ended = True
            else:
                self._buffer += chunk
                if len(self._buffer) > _LINE_LIMIT:
                    raise StoreProtocolError(f"etcd at {endpoint}: stream message too large")


def _parse_object(data: bytes, endpoint: Endpoint) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreProtocolError(f"etcd at {endpoint} sent bad JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise StoreProtocolError(f"etcd at {endpoint} sent JSON that is not an object")
    return obj


def gateway_error(status: int, body: dict[str, Any]) -> GatewayError:
    """The error an HTTP error reply (or an ``error`` member of a stream) describes."""
    err = body.get("error", body)
    if isinstance(err, dict):
        message = str(err.get("message") or err.get("error") or err)
        code = err.get("code", err.get("grpc_code", 0))
    else:
        message = str(body.get("message") or err)
        code = body.get("code", 0)
    return GatewayError(status, code if isinstance(code, int) else 0, message)


def translate(error: GatewayError, endpoint: Endpoint, what: str) -> StoreError:
    """The store exception for an error answer of etcd."""
    msg = f"etcd at {endpoint} refused {what}: {error.message}"
    text = error.message.lower()
    if "lease not found" in text:
        return LeaseNotFoundError(msg)
    if "compacted" in text:
        return RevisionCompactedError(msg)
    if error.code in (_UNAUTHENTICATED, _PERMISSION_DENIED) or any(
        s in text for s in ("auth", "permission denied", "user name", "password")
    ):
        return StoreAuthError(msg)
    if error.code == _UNAVAILABLE:
        return StoreConnectionError(msg)
    if error.code in (_INVALID_ARGUMENT, _FAILED_PRECONDITION, _OUT_OF_RANGE, _NOT_FOUND):
        return StoreRequestError(ErrorCode.INVALID_ARGUMENT, msg)
    if error.status == 404 and error.code == 0:
        return StoreProtocolError(
            f"{endpoint} has no etcd v3 JSON gateway at the path of {what} "
            f"(HTTP 404: {error.message[:80]})"
        )
    return StoreRequestError(ErrorCode.INVALID_ARGUMENT, msg)


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
        self._idle: dict[Endpoint, list[Connection]] = {e: [] for e in self.endpoints}
        self._busy: set[Connection] = set()
        self._closed = False
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

    async def open(self, endpoint: Endpoint) -> Connection:
        """A new connection to ``endpoint``.

        Raises:
            _NotSent: it could not be opened (the message says why).
        """
        if self._closed:
            raise StoreConnectionError("the etcd store was closed")
        try:
            reader, writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=self._ssl,
                server_hostname=endpoint.host if self._ssl is not None else None,
                limit=_LINE_LIMIT,
            )
        except ssl.SSLCertVerificationError as exc:
            raise _NotSent(f"TLS certificate check failed: {exc.verify_message}") from exc
        except ssl.SSLError as exc:
            raise _NotSent(f"TLS handshake failed: {exc.reason or exc}") from exc
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or repr(exc))
            raise _NotSent(reason.lower()) from exc
        return Connection(endpoint, reader, writer)

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
        if self._closed or not conn.usable or len(idle) >= _IDLE_PER_ENDPOINT:
            conn.abort()
        else:
            idle.append(conn)

    def headers(self) -> dict[str, str]:
        """Headers every request carries (the auth token, once authenticated)."""
        return {} if self.token is None else {"Authorization": self.token}

    async def exchange(
        self, endpoint: Endpoint, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """One request on one endpoint; reuse a keep-alive connection when there is one.

        Raises:
            _NotSent: the request surely did not reach etcd.
            _Lost: it was sent and the reply was lost.
        """
        for _ in range(2):  # a stale reused connection earns one fresh retry
            conn = await self._take(endpoint)
            self._busy.add(conn)
            try:
                conn.send(path, body, headers)
                await conn.writer.drain()
                status, head = await conn.read_head()
                data = await conn.read_body(head)
            except StoreProtocolError:
                conn.abort()
                raise
            except (*_IO_ERRORS, ValueError) as exc:
                conn.abort()
                if conn.reused and not conn.answered:
                    continue  # the server had closed this idle connection: not sent
                raise _Lost(repr(exc)) from exc
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
        raise _NotSent("the connection closed before the request could be sent")

    async def call(
        self, path: str, payload: dict[str, Any], what: str, *, idempotent: bool
    ) -> dict[str, Any]:
        """Send ``payload`` to ``path``, failing over between endpoints; return the reply.

        Args:
            path: the gateway path, such as ``/v3/kv/range``.
            payload: the JSON request.
            what: the operation, for messages.
            idempotent: whether the request may be sent again after its reply was lost.

        Raises:
            StoreConnectionError: no endpoint could be reached (each one's failure is named),
                or a write's reply was lost (its outcome is unknown).
            StoreTimeoutError: no answer within the timeout.
            StoreError: etcd refused the request (translated by ``translate``).
        """
        body = json.dumps(payload).encode()
        failures: dict[Endpoint, str] = {}
        trying: list[Endpoint | None] = [None]
        try:
            async with asyncio.timeout(self.timeout):
                return await self._call(path, body, what, idempotent, failures, trying)
        except TimeoutError:
            where = f" (waiting for {trying[0]})" if trying[0] is not None else ""
            tried = "; ".join(f"{e}: {m}" for e, m in failures.items())
            raise StoreTimeoutError(
                f"etcd did not answer {what} within {self.timeout:g} s{where}"
                + (f"; earlier failures: {tried}" if tried else "")
            ) from None

    async def _call(
        self,
        path: str,
        body: bytes,
        what: str,
        idempotent: bool,
        failures: dict[Endpoint, str],
        trying: list[Endpoint | None],
    ) -> dict[str, Any]:
        backoff = 0.05
        reauthenticated = False
        while True:
            answered = False
            for endpoint in self.rotation():
                if self._closed:
                    raise StoreConnectionError("the etcd store was closed")
                trying[0] = endpoint
                try:
                    status, data = await self.exchange(endpoint, path, body, self.headers())
                except _NotSent as exc:
                    failures[endpoint] = f"cannot connect ({exc})"
                    continue
                except _Lost as exc:
                    failures[endpoint] = f"connection lost ({exc})"
                    if idempotent:
                        continue
                    raise StoreConnectionError(
                        f"lost the connection to etcd at {endpoint} during {what}; "
                        f"its outcome is unknown: {exc}"
                    ) from None
                answered = True
                self.prefer(endpoint)
                reply = _parse_object(data, endpoint) if data.strip() else {}
                if status == 200 and "error" not in reply:
                    return reply
                error = gateway_error(status, reply)
                text = error.message.lower()
                if "invalid auth token" in text and self.reauth is not None and not reauthenticated:
                    reauthenticated = True
                    await self.reauth()
                    break
                if error.code == _UNAVAILABLE and (
                    idempotent or any(s in text for s in _NOT_APPLIED)
                ):
                    failures[endpoint] = error.message
                    continue
                raise translate(error, endpoint, what)
            else:
                if not answered:
                    listing = "; ".join(f"{self.scheme}://{e}: {m}" for e, m in failures.items())
                    raise StoreConnectionError(f"cannot reach etcd for {what}: {listing}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)

    async def stream(self, path: str, payload: dict[str, Any], endpoint: Endpoint) -> LineStream:
        """Open a streaming request (a watch) on ``endpoint``; its connection is its own.

        Raises:
            _NotSent: the endpoint cannot be reached.
            StoreError: etcd refused it (translated).
        """
        conn = await self.open(endpoint)
        try:
            conn.send(path, json.dumps(payload).encode(), self.headers())
            await conn.writer.drain()
            status, head = await conn.read_head()
            if status != 200:
                data = await conn.read_body(head)
                reply = _parse_object(data, endpoint) if data.strip() else {}
                raise translate(gateway_error(status, reply), endpoint, "watch")
        except _IO_ERRORS as exc:
            conn.abort()
            raise _NotSent(repr(exc)) from exc
        except BaseException:
            conn.abort()
            raise
        return LineStream(conn, head)

    def abort(self) -> None:
        """Drop every connection now."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
            idle.clear()
        for conn in list(self._busy):
            conn.abort()
        self._busy.clear()

    async def close(self) -> None:
        """Close every connection."""
        self._closed = True
        conns = [c for idle in self._idle.values() for c in idle]
        for idle in self._idle.values():
            idle.clear()
        for conn in list(self._busy):
            conn.abort()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
