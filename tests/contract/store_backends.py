"""Backends for the store contract suite (imported by conftest.py and the tests).

Each backend is an async context manager factory that yields a ``Harness``: a way to open
client connections to one fresh, empty store. To run the whole suite against a new backend
(etcd, an in-memory fake), add one entry to ``BACKENDS``; nothing else changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace

import pytest
from tests.contract.etcd_servers import EtcdCluster, have_etcd

from rallypoint.store import KeyValueStore, StoreClient, StoreServer
from rallypoint.store.etcd import EtcdStore
from rallypoint.store.server import DEFAULT_LIMITS


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
    server = StoreServer(
        "127.0.0.1",
        0,
        "contract-run",
        b"contract-secret",
        limits=replace(DEFAULT_LIMITS, handshake_timeout=2),
    )
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


@asynccontextmanager
async def etcd_backend() -> AsyncIterator[Harness]:
    """A real single-member etcd in a temp folder on loopback, and ``EtcdStore`` clients.

    Each scenario gets its own etcd (it starts in a fraction of a second), so revisions
    and leases of one scenario never leak into the next. Sessions use a 1 s etcd-side
    lease TTL, so a killed session's keys vanish within about 1.5 s.
    """
    cluster = await asyncio.to_thread(EtcdCluster(1).start)
    stores: list[EtcdStore] = []

    async def connect() -> KeyValueStore:
        store = await EtcdStore.connect(cluster.endpoints, "contract-run", timeout=5, session_ttl=1)
        stores.append(store)
        return store

    async def kill(store: KeyValueStore) -> None:
        assert isinstance(store, EtcdStore)
        await store.abort()

    try:
        yield Harness(connect, kill)
    finally:
        for store in stores:
            await store.close()
        await asyncio.to_thread(cluster.stop)


_ETCD_MARKS = (
    pytest.mark.integration,
    pytest.mark.skipif(not have_etcd(), reason="etcd is not installed"),
)

BACKENDS: dict[str, tuple[Backend, tuple[pytest.MarkDecorator, ...]]] = {
    "tcp": (tcp_backend, (pytest.mark.integration,)),
    "etcd": (etcd_backend, _ETCD_MARKS),
}
