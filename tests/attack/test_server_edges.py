"""Edges that need the server in this process: a stalled loop, close() at once, fan-out."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from rallypoint.store import StoreClient, StoreConnectionError, StoreServer
from rallypoint.store.secret import make_proof
from rallypoint.store.state import Quota
from rallypoint.store.wire import Challenge, FrameDecoder, Hello, encode

pytestmark = pytest.mark.integration

HOST, RUN, SECRET = "127.0.0.1", "edge-run", b"edge-secret"


def run(scenario: Callable[[], Awaitable[None]], limit: float = 60) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await scenario()

    asyncio.run(bounded())


def test_a_stalled_server_does_not_expire_leases_whose_keepalives_wait_unread() -> None:
    """The loop blocks for 2.5 s, longer than the 1 s TTL; the owner kept sending."""
    errors: list[str] = []
    stop = threading.Event()

    def owner(port: int, granted: threading.Event) -> None:
        async def keep() -> None:
            async with await StoreClient.connect(HOST, port, RUN, SECRET, 10) as client:
                lease = await client.lease_grant(1.0)
                await client.put("alive", "yes", lease=lease)
                granted.set()
                while not stop.is_set():
                    await asyncio.sleep(0.2)
                    try:
                        await client.lease_keepalive(lease)
                    except Exception as exc:
                        errors.append(repr(exc))
                        return

        asyncio.run(keep())

    async def scenario() -> None:
        async with StoreServer(HOST, 0, RUN, SECRET) as server:
            granted = threading.Event()
            thread = threading.Thread(target=owner, args=(server.port, granted))
            thread.start()
            await asyncio.get_running_loop().run_in_executor(None, granted.wait, 10)
            time.sleep(2.5)  # the whole loop stalls: no read, no timer, nothing
            await asyncio.sleep(1.0)  # then runs again, timers due at once
            alive = server.state.get("alive")
            stop.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            assert errors == []
            assert alive is not None

    run(scenario)


def test_close_is_safe_right_after_the_server_dropped_the_connection() -> None:
    async def scenario() -> None:
        for i in range(20):
            server = StoreServer(HOST, 0, RUN, SECRET)
            await server.start()
            client = await StoreClient.connect(HOST, server.port, RUN, SECRET, 5)
            await server.close()
            for _ in range(i % 4):
                await asyncio.sleep(0)  # land in each step of the reader's shutdown
            await client.close()
            await client.close()  # and twice
            with pytest.raises(StoreConnectionError):
                await client.get("k")

    run(scenario)


async def _puts_per_second(client: StoreClient, n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(client.put(f"data/{i % 100}", "v") for i in range(n)))
    return n / (time.perf_counter() - started)


async def _raw_watches(port: int, count: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open ``count`` watches over a bare socket: no client objects, no decoding here."""
    reader, writer = await asyncio.open_connection(HOST, port)
    challenge = FrameDecoder().feed(await reader.read(65536))[0]
    assert isinstance(challenge, Challenge)
    writer.write(encode(Hello(RUN, make_proof(SECRET, challenge.nonce, RUN))))
    writer.write(b"".join(_watch_frame(i) for i in range(count)))
    replies = 0
    while replies < count:
        replies += (await reader.read(1 << 20)).count(b'"watch_reply"')
    return reader, writer


def _watch_frame(i: int) -> bytes:
    body = f'{{"type":"watch","id":{i},"prefix":"w/{i}/","start_revision":null}}'.encode()
    return struct.pack(">I", len(body)) + body


def test_watch_fan_out_costs_the_matching_watches_not_all() -> None:
    async def scenario() -> None:
        quota = Quota(max_watches_per_owner=200_000)
        async with StoreServer(HOST, 0, RUN, SECRET, quota=quota) as server:
            client = await StoreClient.connect(HOST, server.port, RUN, SECRET, 60)
            before = await _puts_per_second(client, 3000)
            started = time.perf_counter()
            reader, writer = await _raw_watches(server.port, 100_000)
            opened = time.perf_counter() - started
            after = await _puts_per_second(client, 3000)
            print(
                f"\nputs/s with no watch {before:.0f}, with 100,000 watches {after:.0f} "
                f"(opened in {opened:.1f} s)"
            )
            assert after > before / 4  # a scan of every prefix made it ~100 times slower
            assert not reader.at_eof()
            writer.close()
            await client.close()

    run(scenario)
