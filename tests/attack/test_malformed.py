"""Malformed input, before and after the handshake: each gets a reply or a clean close.

Every case opens its own connection to a real server (``serve.py``), sends its bytes and
reads until a reply to request 1 arrives ("reply", which may be an ``error``) or the
server closes ("closed"). Afterwards a good client still works and the server's log holds
no traceback and no ERROR line.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from rallypoint.store import StoreClient
from rallypoint.store.secret import make_proof
from rallypoint.store.wire import Challenge, ErrorReply, FrameDecoder, Hello, Message, encode
from tests.attack.harness import RUN, SECRET, store_server

pytestmark = pytest.mark.integration

MAX_FRAME = 1 << 20  # the test server's frame limit, so oversized cases stay small


def frame(body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return struct.pack(">I", len(data)) + data


def req(**fields: object) -> bytes:
    return frame(json.dumps(fields))


def utf8(**fields: object) -> bytes:
    """A frame in raw UTF-8: 4 bytes per emoji here, 12 once the server escapes it."""
    return frame(json.dumps(fields, ensure_ascii=False))


def raw(text: str) -> bytes:
    """A frame whose JSON is written by hand (escapes json.dumps would not produce)."""
    return frame(text.encode())


_rng = random.Random(10)
Case = Callable[[dict[str, int]], bytes]


def _random_bytes(size: int) -> Case:
    return lambda _: _rng.randbytes(size)


# name -> (before the handshake?, the bytes, what may happen)
CASES: dict[str, tuple[bool, Case, set[str]]] = {
    **{f"random-bytes-{i}": (True, _random_bytes(64 + 97 * i), {"closed"}) for i in range(5)},
    "http": (True, lambda _: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", {"closed"}),
    "4GiB-prefix": (True, lambda _: struct.pack(">I", 0xFFFFFFFF), {"closed"}),
    "16MiB-prefix": (True, lambda _: struct.pack(">I", 16 << 20) + b"[{},", {"closed"}),
    "hello-too-big": (True, lambda _: frame(b" " * 2000), {"closed"}),
    "empty-frame": (True, lambda _: frame(b""), {"closed"}),
    "not-utf8": (True, lambda _: frame(b"\xff\xfe\xfd"), {"closed"}),
    "not-json": (True, lambda _: frame(b"hello"), {"closed"}),
    "json-array": (True, lambda _: frame(b"[1,2]"), {"closed"}),
    "hello-extra-field": (True, lambda _: req(type="hello", run_id=RUN, proof="", x=1), {"closed"}),
    "hello-proof-int": (True, lambda _: req(type="hello", run_id=RUN, proof=5), {"closed"}),
    "hello-lone-surrogate": (
        True,
        lambda _: raw('{"type":"hello","run_id":"' + RUN + '","proof":"\\ud800"}'),
        {"closed"},
    ),
    "hello-surrogate-run-id": (
        True,
        lambda _: raw('{"type":"hello","run_id":"\\udfff","proof":"00"}'),
        {"closed"},
    ),
    "hello-wrong-run": (True, lambda _: req(type="hello", run_id="other", proof="00"), {"closed"}),
    "hello-wrong-proof": (
        True,
        lambda _: req(type="hello", run_id=RUN, proof="0" * 64),
        {"closed"},
    ),
    "request-first": (True, lambda _: req(type="get", id=1, key="k"), {"closed"}),
    "welcome-from-client": (True, lambda _: req(type="welcome"), {"closed"}),
    "nan": (True, lambda _: raw('{"type":"lease_grant","id":1,"ttl":NaN}'), {"closed"}),
    "huge-int-digits": (
        True,
        lambda _: raw('{"type":"get","id":' + "9" * 5000 + ',"key":"k"}'),
        {"closed"},
    ),
    "deep-small": (True, lambda _: frame(b"[" * 500 + b"]" * 500), {"closed"}),
    # after the handshake
    "key-int": (False, lambda _: req(type="get", id=1, key=7), {"closed"}),
    "id-bool": (False, lambda _: req(type="get", id=True, key="k"), {"closed"}),
    "id-2^63": (False, lambda _: req(type="get", id=1 << 63, key="k"), {"closed"}),
    "id-min": (False, lambda _: req(type="get", id=1, key="k"), {"reply"}),
    "put-expected-negative": (
        False,
        lambda _: req(type="put", id=1, key="k", value="v", expected_revision=-1, lease=None),
        {"error"},
    ),
    "put-unknown-lease": (
        False,
        lambda _: req(type="put", id=1, key="k", value="v", expected_revision=None, lease=12345),
        {"error"},
    ),
    "put-lease-negative": (
        False,
        lambda _: req(type="put", id=1, key="k", value="v", expected_revision=None, lease=-1),
        {"error"},
    ),
    "put-over-frame": (
        False,
        lambda _: req(
            type="put", id=1, key="k", value="x" * MAX_FRAME, expected_revision=None, lease=None
        ),
        {"closed"},
    ),
    "put-reply-too-large": (
        False,
        lambda _: utf8(
            type="put",
            id=1,
            key="k",
            value="\U0001f600" * (MAX_FRAME // 5),
            expected_revision=None,
            lease=None,
        ),
        {"error"},
    ),
    "put-surrogate-key": (
        False,
        lambda _: raw(
            '{"type":"put","id":1,"key":"\\ud800","value":"\\udc00x","expected_revision":null,"lease":null}'
        ),
        {"reply"},
    ),
    "put-expected-huge": (
        False,
        lambda _: req(
            type="put", id=1, key="k", value="v", expected_revision=(1 << 63) - 1, lease=None
        ),
        {"reply"},
    ),
    "delete-expected-negative": (
        False,
        lambda _: req(type="delete", id=1, key="k", expected_revision=-5),
        {"error"},
    ),
    "add-amount-2^63": (
        False,
        lambda _: req(type="add", id=1, key="n", amount=1 << 63),
        {"closed"},
    ),
    "add-overflow": (False, lambda _: req(type="add", id=1, key="max", amount=1), {"error"}),
    "add-underflow": (False, lambda _: req(type="add", id=1, key="min", amount=-1), {"error"}),
    "add-4300-digits": (False, lambda _: req(type="add", id=1, key="digits", amount=1), {"error"}),
    "add-not-integer": (False, lambda _: req(type="add", id=1, key="word", amount=1), {"error"}),
    "add-amount-float": (False, lambda _: req(type="add", id=1, key="n", amount=1.5), {"closed"}),
    "watch-negative-start": (
        False,
        lambda _: req(type="watch", id=1, prefix="", start_revision=-1),
        {"error"},
    ),
    "watch-compacted": (
        False,
        lambda _: req(type="watch", id=1, prefix="", start_revision=0),
        {"error", "reply"},
    ),
    "watch-future-start": (
        False,
        lambda _: req(type="watch", id=1, prefix="", start_revision=1 << 62),
        {"reply"},
    ),
    "unwatch-unknown": (False, lambda _: req(type="unwatch", id=1, watch_id=999_999), {"error"}),
    "grant-ttl-zero": (False, lambda _: req(type="lease_grant", id=1, ttl=0), {"error"}),
    "grant-ttl-negative": (False, lambda _: req(type="lease_grant", id=1, ttl=-3.5), {"error"}),
    "grant-ttl-huge": (False, lambda _: req(type="lease_grant", id=1, ttl=1e308), {"reply"}),
    "grant-ttl-string": (False, lambda _: req(type="lease_grant", id=1, ttl="5"), {"closed"}),
    "grant-ttl-infinity": (
        False,
        lambda _: raw('{"type":"lease_grant","id":1,"ttl":Infinity}'),
        {"closed"},
    ),
    "grant-ttl-overflow": (
        False,
        lambda _: raw('{"type":"lease_grant","id":1,"ttl":1e999}'),
        {"closed"},
    ),
    "keepalive-unknown": (False, lambda _: req(type="lease_keepalive", id=1, lease=42), {"error"}),
    "revoke-unknown": (False, lambda _: req(type="lease_revoke", id=1, lease=42), {"error"}),
    "revoke-someone-elses": (
        False,
        lambda ctx: req(type="lease_revoke", id=1, lease=ctx["lease"]),
        {"error"},
    ),
    "keepalive-someone-elses": (
        False,
        lambda ctx: req(type="lease_keepalive", id=1, lease=ctx["lease"]),
        {"reply"},
    ),
    "range-too-large": (False, lambda _: req(type="range", id=1, prefix=""), {"error"}),
    "unknown-type": (False, lambda _: req(type="drop_tables", id=1), {"closed"}),
    "challenge-from-client": (
        False,
        lambda _: req(type="challenge", nonce="x", server_version=1),
        {"closed"},
    ),
    "second-hello": (False, lambda _: req(type="hello", run_id=RUN, proof=""), {"closed"}),
    "missing-field": (False, lambda _: req(type="put", id=1, key="k"), {"closed"}),
    "extra-field": (False, lambda _: req(type="get", id=1, key="k", admin=True), {"closed"}),
    "null-key": (False, lambda _: req(type="get", id=1, key=None), {"closed"}),
    "many-empty-objects": (False, lambda _: frame(b"[" + b"{}," * 300_000 + b"{}]"), {"closed"}),
    "deep-nesting": (False, lambda _: frame(b"[" * 100_000 + b"]" * 100_000), {"closed"}),
    "many-fields": (
        False,
        lambda _: frame(json.dumps({f"f{i}": i for i in range(50_000)})),
        {"closed"},
    ),
    "long-key": (False, lambda _: req(type="get", id=1, key="k" * (MAX_FRAME // 2)), {"reply"}),
    "truncated-frame": (False, lambda _: struct.pack(">I", 100) + b'{"type":"get"', {"closed"}),
    "garbage-after-request": (
        False,
        lambda _: req(type="get", id=1, key="k") + b"\x00\x00\x00\x05junk!",
        {"reply", "closed"},
    ),
}


async def _session(
    port: int, authenticate: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameDecoder]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = FrameDecoder(max_frame=16 << 20)
    messages = await _read(reader, decoder)
    challenge = messages[0]
    assert isinstance(challenge, Challenge)
    if authenticate:
        proof = make_proof(SECRET.encode(), challenge.nonce, RUN)
        writer.write(encode(Hello(RUN, proof)))
        await _read(reader, decoder)  # the welcome
    return reader, writer, decoder


async def _read(reader: asyncio.StreamReader, decoder: FrameDecoder) -> list[Message]:
    while True:
        try:
            data = await reader.read(65536)
        except ConnectionResetError:  # closed with our bytes unread: a close all the same
            return []
        if not data:
            return []
        if got := decoder.feed(data):
            return got


async def _outcome(port: int, before_handshake: bool, payload: bytes) -> str:
    reader, writer, decoder = await _session(port, not before_handshake)
    writer.write(payload)
    if payload.endswith(b'{"type":"get"'):
        writer.write_eof()  # a frame cut short by the peer's end of stream
    try:
        async with asyncio.timeout(10):
            while True:
                messages = await _read(reader, decoder)
                if not messages:
                    return "closed"
                for msg in messages:
                    if getattr(msg, "id", None) == 1:
                        return "error" if isinstance(msg, ErrorReply) else "reply"
    finally:
        writer.close()


async def _setup(port: int) -> tuple[StoreClient, dict[str, int]]:
    owner = await StoreClient.connect("127.0.0.1", port, RUN, SECRET.encode(), 10)
    await owner.put("max", str((1 << 63) - 1))
    await owner.put("min", str(-(1 << 63)))
    await owner.put("digits", "9" * 4301)
    await owner.put("word", "abc")
    for i in range(30):
        await owner.put(f"fill/{i}", "x" * 40_000)  # a range over everything is too large
    lease = await owner.lease_grant(3600)
    return owner, {"lease": lease}


def test_malformed_input_gets_a_reply_or_a_clean_close(tmp_path: Path) -> None:
    limits = {"max_frame": MAX_FRAME, "handshake_timeout": 5.0}
    quota = {"history_limit": 20}
    with store_server(tmp_path, limits=limits, quota=quota) as server:
        outcomes = asyncio.run(_all(server.port))
        log = server.log_text()
    print(f"\n{len(outcomes)} malformed cases: {sorted(set(outcomes.values()))}")
    wrong = {n: o for n, o in outcomes.items() if o not in CASES[n][2]}
    assert not wrong, wrong
    assert "Traceback" not in log, log[-3000:]
    assert "ERROR" not in log, log[-3000:]


async def _all(port: int) -> dict[str, str]:
    owner, ctx = await _setup(port)
    outcomes = {}
    for name, (before, payload, _) in CASES.items():
        outcomes[name] = await _outcome(port, before, payload(ctx))
    assert await owner.get("word") is not None  # the store still works for others
    await owner.close()
    return outcomes
