"""HTTP/1.1 on asyncio streams for the etcd v3 JSON gateway: one connection, no policy.

Design note
-----------
A ``Connection`` writes one ``POST`` with a JSON body and reads one response
(``Content-Length`` or chunked, trailers included). A ``LineStream`` reads a streamed
(chunked) response as the gateway writes it: one JSON object per line. Which endpoint to
use, pooling and failover live in ``_pool`` and ``_gateway``; the gateway's error answers
are read in ``_translate``. Malformed replies raise ``StoreProtocolError`` here, naming
the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rallypoint.store._errors import StoreConnectionError, StoreProtocolError

_MAX_BODY = 256 * 1024 * 1024
_MAX_HEADERS = 100
LINE_LIMIT = 64 * 1024 * 1024  # one JSON line of a stream (a watch message)
IO_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL's host and port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class NotSent(Exception):
    """The request provably never left (safe to send again anywhere)."""


class Lost(Exception):
    """The request may have reached the server, and the connection broke before the reply."""


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

    def send(self, path: str, body: bytes, headers: Mapping[str, str]) -> bool:
        """Write one POST request (the caller drains); False if provably none of it left.

        CPython's socket transport makes its first ``send`` inside ``write``; when that
        fails (the peer had reset the connection) the transport is closing before
        ``write`` returns, and not one byte of the request went out. Where that does not
        hold (TLS, the bytes buffered), this says True: the request may have been sent.
        """
        transport = self.writer.transport
        if transport.is_closing():
            return False
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
        return not transport.is_closing()

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
            return await self._read_chunked()
        length_text = headers.get("content-length")
        if length_text is None or not length_text.isdigit():
            raise StoreProtocolError(f"etcd at {self.endpoint}: reply has no usable length")
        length = int(length_text)
        if length > _MAX_BODY:
            raise StoreProtocolError(f"etcd at {self.endpoint}: reply too large")
        return await self.reader.readexactly(length)

    async def _read_chunked(self) -> bytes:
        parts = []
        total = 0
        while (chunk := await self.read_chunk()) is not None:
            total += len(chunk)
            if total > _MAX_BODY:
                raise StoreProtocolError(f"etcd at {self.endpoint}: reply too large")
            parts.append(chunk)
        return b"".join(parts)

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
        while True:
            line = self._pop_line()
            if line is not None:
                return parse_object(line, self.connection.endpoint)
            if self._ended:
                return None
            await self._fill()

    def _pop_line(self) -> bytes | None:
        """The next non-blank line buffered (and, once the stream ended, what is left)."""
        while (newline := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if line.strip():
                return line
        if self._ended and self._buffer.strip():
            line = bytes(self._buffer)
            self._buffer.clear()
            return line
        return None

    async def _fill(self) -> None:
        """Buffer the next piece of the stream, or note that it ended."""
        endpoint = self.connection.endpoint
        try:
            if self._chunked:
                chunk = await self.connection.read_chunk()
            else:
                chunk = await self.connection.reader.read(64 * 1024) or None
        except IO_ERRORS as exc:
            raise StoreConnectionError(f"lost the stream from etcd at {endpoint}: {exc!r}") from exc
        if chunk is None:
            self._ended = True
            return
        self._buffer += chunk
        if len(self._buffer) > LINE_LIMIT:
            raise StoreProtocolError(f"etcd at {endpoint}: stream message too large")


def parse_object(data: bytes, endpoint: Endpoint) -> dict[str, Any]:
    """The JSON object ``data`` holds.

    Raises:
        StoreProtocolError: it is not JSON, or not an object.
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreProtocolError(f"etcd at {endpoint} sent bad JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise StoreProtocolError(f"etcd at {endpoint} sent JSON that is not an object")
    return obj
