"""Backends for the store contract suite (imported by conftest.py and the tests).

Each backend is an async context manager factory that yields a ``Harness``: a way to open
client connections to one fresh, empty store. To run the whole suite against a new backend
(etcd, an in-memory fake), add one entry to ``BACKENDS``; nothing else changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from rallypoint.store import KeyValueStore, StoreClient, StoreServer


@dataclass(frozen=True)
class Harness:
    """One fresh store under test.

    Attributes:
        connect: open a new client session (closed by the harness at the end).
        kill: end a session abruptly, as a dead agent would (no revoke, no goodbye).
    """

    connect: Callable[[], Awaitable[KeyValueStore]]
    kill: Callable[[KeyValueStore], Awaitable[None]]


Scenario = Callable[[Harness], Awaitable[None]]
Backend = Callable[[], AbstractAsyncContextManager[Harness]]


@asynccontextmanager
async def tcp_backend() -> AsyncIterator[Harness]:
    """Our own TCP store server on 127.0.0.1, with a secret, and its client."""
    server = StoreServer("127.0.0.1", 0, "contract-run", b"contract-secret", handshake_timeout=2)
    await server.start()
    clients: list[StoreClient] = []

    async def connect() -> KeyValueStore:
        client = await StoreClient.connect(
            "127.0.0.1", server.port, "contract-run", b"contract-secret", timeout=5
        )
        clients.append(client)
        return client

    async def kill(store: KeyValueStore) -> None:
        assert isinstance(store, StoreClient)
        store._writer.transport.abort()

    try:
        yield Harness(connect, kill)
    finally:
        for client in clients:
            await client.close()
        await server.close()


BACKENDS: dict[str, tuple[Backend, tuple[pytest.MarkDecorator, ...]]] = {
    "tcp": (tcp_backend, (pytest.mark.integration,)),
}
