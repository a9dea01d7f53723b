"""Clear, bounded failures: unreachable or silent endpoints, bad credentials."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from rallypoint.store import (
    StoreAuthError,
    StoreConnectionError,
    StoreProtocolError,
    StoreTimeoutError,
)
from rallypoint.store.etcd import EtcdStore
from tests.contract.etcd_servers import EtcdCluster, free_ports

from .conftest import needs_etcd


def test_unreachable_endpoints_are_each_named() -> None:
    ports = free_ports(2)
    endpoints = [("127.0.0.1", p) for p in ports]
    started = time.monotonic()
    with pytest.raises(StoreConnectionError) as info:
        asyncio.run(EtcdStore.connect(endpoints, "run", timeout=3))
    assert time.monotonic() - started < 3
    message = str(info.value)
    for port in ports:
        assert f"127.0.0.1:{port}" in message
    assert "refused" in message.lower()


def test_a_silent_endpoint_times_out_naming_it() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(StoreTimeoutError, match=f"127.0.0.1:{port}"):
            asyncio.run(EtcdStore.connect([("127.0.0.1", port)], "run", timeout=0.5))
        assert time.monotonic() - started < 2


def test_something_else_than_etcd_is_a_clear_error() -> None:
    async def main() -> None:
        async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"SSH-2.0-OpenSSH_9.0\r\n")
            await w.drain()
            w.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(StoreProtocolError, match=f"127.0.0.1:{port}.*HTTP"):
                await EtcdStore.connect([("127.0.0.1", port)], "run", timeout=2)

    asyncio.run(main())


@needs_etcd
@pytest.mark.integration
def test_fails_over_past_dead_endpoints(etcd: EtcdCluster) -> None:
    dead = [("127.0.0.1", p) for p in free_ports(2)]

    async def main() -> None:
        store = await EtcdStore.connect([*dead, *etcd.endpoints], "run", timeout=3)
        try:
            assert (await store.put("k", "v")).ok
            watch = await store.watch("")
            await store.put("k", "w")
            event = await asyncio.wait_for(anext(watch), 3)
            assert (event.key, event.value) == ("k", "w")
        finally:
            await store.close()

    asyncio.run(main())


@needs_etcd
@pytest.mark.integration
def test_user_and_password(etcd: EtcdCluster) -> None:
    etcd.enable_auth("rootpw")

    async def main() -> None:
        with pytest.raises(StoreAuthError, match=r"127\.0\.0\.1"):
            await EtcdStore.connect(etcd.endpoints, "run", auth=("root", "wrong"), timeout=3)
        store = await EtcdStore.connect(etcd.endpoints, "run", auth=("root", "rootpw"), timeout=3)
        try:
            watch = await store.watch("")
            lease = await store.lease_grant(5)
            assert (await store.put("k", "v", expected_revision=0, lease=lease)).ok
            assert await store.add("n", 2) == 2
            assert (await asyncio.wait_for(anext(watch), 3)).key == "k"
        finally:
            await store.close()
        with pytest.raises(StoreAuthError):
            await EtcdStore.connect(etcd.endpoints, "run", timeout=3)  # no credentials

    asyncio.run(main())
