"""Server and client over real loopback sockets: bad peers are refused, others carry on."""

from __future__ import annotations

import ast
import asyncio
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path

import pytest

from rallypoint.store import (
    ErrorCode,
    EventKind,
    StoreAuthError,
    StoreClient,
    StoreConnectionError,
    StoreRequestError,
    StoreServer,
    WatchEvent,
)
from rallypoint.store.server import DEFAULT_LIMITS
from rallypoint.store.wire import Challenge, FrameDecoder, GetRequest, Message, Refused, encode

pytestmark = pytest.mark.integration

RUN, SECRET = "run-7", b"correct horse"
HOST = "127.0.0.1"
STORE_SRC = Path(__file__).resolve().parents[3] / "src" / "rallypoint"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(10):
            await scenario()

    asyncio.run(bounded())


@asynccontextmanager
async def serving(**kwargs: object) -> AsyncIterator[StoreServer]:
    server = StoreServer(HOST, 0, RUN, SECRET, **kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def connect(
    server: StoreServer, run_id: str = RUN, secret: bytes | None = SECRET
) -> StoreClient:
    return await StoreClient.connect(HOST, server.port, run_id, secret, timeout=5)


async def still_works(client: StoreClient) -> None:
    await client.put("alive", "yes")
    got = await client.get("alive")
    assert got is not None
    assert got.value == "yes"


async def read_until_eof(reader: asyncio.StreamReader) -> list[Message]:
    """Read everything the server sends until it closes; fails if it never does."""
    decoder = FrameDecoder()
    messages: list[Message] = []
    while data := await asyncio.wait_for(reader.read(65536), 3):
        messages.extend(decoder.feed(data))
    return messages


@asynccontextmanager
async def raw_socket(
    server: StoreServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


async def expect_dropped(server: StoreServer, payload: bytes) -> list[Message]:
    async with raw_socket(server) as (reader, writer):
        writer.write(payload)
        return await read_until_eof(reader)


def test_binds_only_the_given_address() -> None:
    async def scenario() -> None:
        async with serving() as server:
            assert server.port > 0
            assert server._server is not None
            assert {s.getsockname()[0] for s in server._server.sockets} == {HOST}

    run(scenario)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="http"),
        pytest.param(struct.pack(">I", 4) + b"\xff\xff\xff\xff", id="not-utf8"),
        pytest.param(struct.pack(">I", 1 << 30), id="oversized-prefix"),
        pytest.param(encode(GetRequest(1, "k")), id="request-before-hello"),
    ],
)
def test_bad_peer_is_dropped_and_others_keep_working(payload: bytes) -> None:
    async def scenario() -> None:
        async with serving() as server:
            good = await connect(server)
            messages = await expect_dropped(server, payload)
            assert isinstance(messages[0], Challenge)
            assert isinstance(messages[-1], Refused)
            await still_works(good)
            await good.close()

    run(scenario)


def test_garbage_after_handshake_closes_only_that_connection() -> None:
    async def scenario() -> None:
        async with serving(limits=replace(DEFAULT_LIMITS, max_frame=1000)) as server:
            good = await connect(server)
            victim = await connect(server)
            victim._writer.write(struct.pack(">I", 5000))  # oversized frame
            with pytest.raises(StoreConnectionError, match="protocol error"):
                await victim.get("k")
            await still_works(good)
            await good.close()
            await victim.close()

    run(scenario)


def test_half_open_connection_times_out() -> None:
    async def scenario() -> None:
        async with serving(limits=replace(DEFAULT_LIMITS, handshake_timeout=0.2)) as server:
            good = await connect(server)
            messages = await expect_dropped(server, b"")
            assert [type(m) for m in messages] == [Challenge]
            await still_works(good)
            await good.close()

    run(scenario)


@pytest.mark.parametrize(
    ("run_id", "secret", "reason"),
    [
        (RUN, b"wrong", "wrong secret"),
        (RUN, None, "wrong secret"),
        ("other", SECRET, "run id 'other' does not match this store's run id 'run-7'"),
    ],
)
def test_handshake_refused_with_clear_reason(
    run_id: str, secret: bytes | None, reason: str
) -> None:
    async def scenario() -> None:
        async with serving() as server:
            good = await connect(server)
            with pytest.raises(StoreAuthError, match=reason):
                await connect(server, run_id, secret)
            await still_works(good)
            await good.close()

    run(scenario)


def test_open_store_accepts_without_secret() -> None:
    async def scenario() -> None:
        server = StoreServer(HOST, 0, RUN, None)
        await server.start()
        client = await connect(server, secret=None)
        await still_works(client)
        await client.close()
        with pytest.raises(StoreAuthError, match="secret"):
            await connect(server, secret=b"unexpected")
        await server.close()

    run(scenario)


def test_closed_connection_ends_its_leases_at_once() -> None:
    async def scenario() -> None:
        async with serving() as server:
            watcher = await connect(server)
            dying = await connect(server)
            lease = await dying.lease_grant(3600)
            await dying.put("nodes/dying", "here", lease=lease)
            watch = await watcher.watch("nodes/")
            dying._writer.transport.abort()  # like a SIGKILLed agent
            event = await asyncio.wait_for(anext(watch), 2)
            assert (event.key, event.value, event.kind) == ("nodes/dying", None, EventKind.DELETE)
            assert await watcher.get("nodes/dying") is None
            await dying.close()
            await watcher.close()

    run(scenario)


def test_lease_expiry_follows_injected_clock() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with serving(clock=clock) as server:
            client = await connect(server)
            lease = await client.lease_grant(30)
            await client.put("k", "v", lease=lease)
            clock.now += 29
            assert await client.get("k") is not None
            clock.now += 2
            assert await client.get("k") is not None  # served first: expiry is the timer's
            assert await client.get("k") is None  # which ran in the very next loop iteration
            await client.close()

    run(scenario)


def test_lease_timer_fires_without_requests() -> None:
    async def scenario() -> None:
        async with serving() as server:
            client = await connect(server)
            watch = await client.watch("")
            lease = await client.lease_grant(0.05)
            await client.put("k", "v", lease=lease)
            put, deleted = [await asyncio.wait_for(anext(watch), 2) for _ in range(2)]
            assert put.kind is EventKind.PUT
            assert deleted == WatchEvent(watch.id, "k", None, put.revision + 1, EventKind.DELETE)
            await client.close()

    run(scenario)


def test_server_close_fails_pending_calls_and_watches() -> None:
    async def scenario() -> None:
        server = StoreServer(HOST, 0, RUN, SECRET)
        await server.start()
        client = await connect(server)
        watch = await client.watch("")
        await server.close()
        with pytest.raises(StoreConnectionError):
            await asyncio.wait_for(anext(watch), 2)
        with pytest.raises(StoreConnectionError):
            await client.get("k")
        assert client.closed
        await client.close()

    run(scenario)


def test_connect_refused_is_a_connection_error() -> None:
    async def scenario() -> None:
        server = StoreServer(HOST, 0, RUN, SECRET)
        await server.start()
        port = server.port
        await server.close()
        with pytest.raises(StoreConnectionError, match="cannot connect"):
            await StoreClient.connect(HOST, port, RUN, SECRET, timeout=2)

    run(scenario)


def test_reply_too_large_is_an_error_not_a_disconnect() -> None:
    async def scenario() -> None:
        async with serving(limits=replace(DEFAULT_LIMITS, max_frame=2000)) as server:
            client = await connect(server)
            for i in range(40):
                await client.put(f"k{i:03}", "x" * 40)
            with pytest.raises(StoreRequestError) as info:
                await client.range("k")
            assert info.value.code is ErrorCode.TOO_LARGE
            await still_works(client)
            await client.close()

    run(scenario)


def test_pipelined_requests_match_their_replies() -> None:
    async def scenario() -> None:
        async with serving() as server:
            client = await connect(server)
            await asyncio.gather(*(client.put(f"k{i}", str(i)) for i in range(200)))
            got = await asyncio.gather(*(client.get(f"k{i}") for i in range(200)))
            assert [kv.value if kv else None for kv in got] == [str(i) for i in range(200)]
            await client.close()

    run(scenario)


def test_no_pickle_in_the_store_package() -> None:
    for path in sorted((STORE_SRC / "store").rglob("*.py")):
        text = path.read_text()
        assert "pickle" not in text.lower(), path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "marshal", "shelve", "dill"} & set(names), path


def test_importing_the_store_does_not_load_pickle() -> None:
    code = "import sys, rallypoint.store; print('pickle' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
