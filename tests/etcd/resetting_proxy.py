"""A TCP proxy in front of one etcd member that can lose a reply after etcd applied the request.

``ResettingProxy`` relays bytes both ways between the store's client and a real etcd.
``arm(path)`` makes it swallow the reply to the next request for that gateway path: it
forwards the request, waits until etcd's answer arrives (so etcd has applied it), then resets
the client's connection (RST, no reply) instead of relaying the answer. ``reset_idle()``
resets every client connection at once, as a restarted server would, before anything more is
sent on them. ``requests`` lists the gateway paths etcd received, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from types import TracebackType

_REQUEST_LINE = re.compile(rb"POST (/v3/\S+) HTTP/1\.1\r\n")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed peer's kernel would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its own upstream connection to etcd."""

    def __init__(self, proxy: ResettingProxy, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.swallow = False  # the next reply from etcd is lost, the client reset

    async def client_to_etcd(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            for match in _REQUEST_LINE.finditer(data):
                path = match.group(1).decode()
                self.proxy.requests.append(path)
                if self.proxy.trap == path:
                    self.proxy.trap = None
                    self.swallow = True
            up.write(data)
            await up.drain()

    async def etcd_to_client(self, up: asyncio.StreamReader) -> None:
        while data := await up.read(65536):
            if self.swallow:
                self.proxy.sprung += 1
                _reset(self.client)
                return
            self.client.write(data)
            await self.client.drain()


class ResettingProxy:
    """A proxy on a free loopback port in front of ``upstream`` (one etcd client URL)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.requests: list[str] = []
        self.trap: str | None = None
        self.sprung = 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> tuple[str, int]:
        """Where the store under test connects."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return ("127.0.0.1", port)

    def arm(self, path: str) -> None:
        """Lose etcd's reply to the next request for ``path`` and reset that connection."""
        self.trap = path

    def reset_idle(self) -> None:
        """Reset every client connection now (nothing in flight on them)."""
        for writer in list(self._clients):
            _reset(writer)

    def count(self, path: str) -> int:
        """How many requests for ``path`` reached etcd."""
        return self.requests.count(path)

    async def __aenter__(self) -> ResettingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()  # ends both pumps of its link
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._clients.add(client)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        link = _Link(self, client)
        try:
            pumps = [
                asyncio.create_task(link.client_to_etcd(reader, up_writer)),
                asyncio.create_task(link.etcd_to_client(up_reader)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            up_writer.transport.abort()
            client.transport.abort()
            self._clients.discard(client)
            self._tasks.discard(task)
