"""The agent's torch store over real sockets: hardening and per-attempt generations."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rallypoint.rendezvous.shared_port import SharedPort
from rallypoint.store import StoreClient, StoreServer
from rallypoint.torchstore.host import TorchStoreHost
from rallypoint.torchstore.server import ServerLimits
from rallypoint.torchstore.wire import (
    VALIDATION_MAGIC,
    Get,
    Limits,
    NumKeys,
    Ping,
    Set,
    Validate,
    Wait,
    encode_request,
)

pytestmark = pytest.mark.integration

HELLO = encode_request(Validate(VALIDATION_MAGIC))


@pytest.fixture
def host() -> Iterator[TorchStoreHost]:
    served = TorchStoreHost.listen(0, ServerLimits(Limits(max_request=4096), 2.0))
    yield served
    served.release()


def _connect(host: TorchStoreHost, first: bytes = HELLO) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", host.port), timeout=10)
    sock.sendall(first)
    return sock


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_ping_after_validation(host: TorchStoreHost) -> None:
    with _connect(host) as sock:
        sock.sendall(encode_request(Ping(0xABCD)))
        assert _recv(sock, 4) == struct.pack("<I", 0xABCD)


@pytest.mark.parametrize(
    "first",
    [
        encode_request(Validate(1234)),  # wrong magic
        encode_request(NumKeys()),  # no validation first
        HELLO + HELLO,  # validated twice
        HELLO + b"\x63",  # unknown query type
        HELLO + b"\x01" + struct.pack("<Q", 1 << 40),  # a length beyond the limit
        HELLO + b"\x06" + struct.pack("<Q", 1 << 30),  # too many keys
    ],
)
def test_a_broken_request_closes_only_its_connection(host: TorchStoreHost, first: bytes) -> None:
    with _connect(host) as good, _connect(host, first) as bad:
        assert _closed(bad)
        good.sendall(encode_request(NumKeys()))
        assert _recv(good, 8) == struct.pack("<q", 0)


def test_a_silent_connection_is_closed_after_the_handshake_timeout(host: TorchStoreHost) -> None:
    with _connect(host, b"") as sock:
        assert _closed(sock)  # within 2 s (the socket's own timeout is 10 s)


def test_connections_after_a_reset_see_a_fresh_store_and_older_ones_keep_theirs(
    host: TorchStoreHost,
) -> None:
    with _connect(host) as old:
        old.sendall(encode_request(Set(b"k", b"stale")))
        old.sendall(encode_request(NumKeys()))
        assert _recv(old, 8) == struct.pack("<q", 1)
        host.fresh_store()
        with _connect(host) as new:
            new.sendall(encode_request(Get(b"k")))
            assert _recv(new, 8) == struct.pack("<Q", 0)
            new.sendall(encode_request(Set(b"k", b"fresh")))
            old.sendall(encode_request(Get(b"k")))
            assert _recv(old, 8 + 5) == struct.pack("<Q", 5) + b"stale"


def test_a_wait_is_answered_by_a_write_on_another_connection(host: TorchStoreHost) -> None:
    with _connect(host) as waiter, _connect(host) as writer:
        waiter.sendall(encode_request(Wait((b"a", b"b"))))
        writer.sendall(encode_request(Set(b"a", b"")) + encode_request(Set(b"b", b"")))
        assert _recv(waiter, 1) == b"\x00"


def test_one_port_serves_both_stores_told_apart_by_the_first_byte() -> None:
    asyncio.run(_both_stores_on_one_port())


async def _both_stores_on_one_port() -> None:
    store = StoreServer("127.0.0.1", 0, "job", None)
    shared = SharedPort.open("127.0.0.1", 0, store)
    shared.start()
    loop = asyncio.get_running_loop()
    try:
        client = await StoreClient.connect("127.0.0.1", shared.port, "job", None, timeout=10)
        await client.put("k", "ours")
        torch_side = await loop.run_in_executor(None, _torch_ping, shared.port)
        assert torch_side == struct.pack("<I", 7)
        got = await client.get("k")
        assert got is not None
        assert got.value == "ours"
        await client.close()
        stranger = await loop.run_in_executor(None, _stranger_closed, shared.port)
        assert stranger
    finally:
        await store.close()
        shared.release()


def _torch_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HELLO + encode_request(Ping(7)))
        return _recv(sock, 4)


def _stranger_closed(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        return _closed(sock)


LAZY_PROBE = """
import socket, struct, sys
from rallypoint.rendezvous.ports import open_master_port
from rallypoint.torchstore.wire import VALIDATION_MAGIC, Ping, Validate, encode_request

port = open_master_port(0, agent_store=True)
print("before serve:", "asyncio" in sys.modules, "rallypoint.torchstore.host" in sys.modules)
early = socket.create_connection(("127.0.0.1", port.port), timeout=10)
early.sendall(encode_request(Validate(VALIDATION_MAGIC)) + encode_request(Ping(7)))
early.settimeout(0.3)
try:
    early.recv(4)
    print("answered before serve")
except TimeoutError:
    pass
port.serve()
early.settimeout(10)
print("after serve:", early.recv(4) == struct.pack("<I", 7))
port.release()
"""


def test_a_single_node_port_listens_at_once_and_serves_what_waited_once_served() -> None:
    """A single-node launch spawns its first workers before it imports the store's server.

    The port listens before ``serve``: a worker's connection made then waits in the
    kernel's queue and is answered once the server runs.
    """
    done = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before serve: False False", "after serve: True"]
