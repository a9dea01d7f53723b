"""Attacks on a store, from a process of their own (as from another machine).

Usage: ``attacker.py MODE PORT SECONDS [RUN_ID SECRET]``; prints one JSON line of what
it did when it ends. Modes:

* ``big-frames``: 10 connections, each announcing a 16 MiB frame of ``[{},{},...]`` and
  sending it as fast as the server takes it; reconnects whenever the server closes.
* ``idle``: 1,000 connections that never send a byte; reopens those the server closes.
* ``no-read``: authenticates, sends 300 ``get``s of the key ``big`` in one write, and
  never reads a byte of the replies.
* ``flood``: 50 authenticated clients pipelining batches of 512 puts and gets.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import struct
import sys
import threading
import time

from rallypoint.store import StoreClient
from rallypoint.store.secret import make_proof
from rallypoint.store.wire import Challenge, FrameDecoder, GetRequest, Hello, encode

HOST = "127.0.0.1"
FRAME = 16 << 20
CHUNK = b"{}," * 21_845  # 64 KiB of the body of [{},{},...]


def big_frames(port: int, until: float) -> dict[str, int]:
    counts = {"frames_started": 0, "bytes_sent": 0}

    def one() -> None:
        while time.monotonic() < until:
            try:
                with socket.create_connection((HOST, port), timeout=2) as sock:
                    sock.sendall(struct.pack(">I", FRAME) + b"[")
                    counts["frames_started"] += 1
                    for _ in range(FRAME // len(CHUNK)):
                        counts["bytes_sent"] += sock.send(CHUNK)
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def idle(port: int, until: float, count: int = 1000) -> dict[str, int]:
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "closed_by_server": 0}

    def open_one() -> None:
        try:
            sock = socket.create_connection((HOST, port), timeout=2)
        except OSError:
            return
        sel.register(sock, selectors.EVENT_READ)
        stats["opened"] += 1

    for _ in range(count):
        open_one()
    while time.monotonic() < until:
        for key, _ in sel.select(0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:  # the server closed it: open another
                sel.unregister(sock)
                sock.close()
                stats["closed_by_server"] += 1
                open_one()
    return stats


def authenticated(port: int, run_id: str, secret: bytes) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    decoder = FrameDecoder()
    challenge = None
    while challenge is None:
        msgs = decoder.feed(sock.recv(65536))
        challenge = msgs[0] if msgs else None
    assert isinstance(challenge, Challenge)
    sock.sendall(encode(Hello(run_id, make_proof(secret, challenge.nonce, run_id))))
    while not decoder.feed(sock.recv(65536)):
        pass
    return sock


def no_read(port: int, until: float, run_id: str, secret: bytes) -> dict[str, int]:
    sock = authenticated(port, run_id, secret)
    sock.setblocking(False)
    payload = b"".join(encode(GetRequest(i, "big")) for i in range(300))
    sent = 0
    while sent < len(payload) and time.monotonic() < until:
        try:
            sent += sock.send(payload[sent:])
        except BlockingIOError:
            time.sleep(0.01)
    time.sleep(max(0.0, until - time.monotonic()))
    sock.close()
    return {"gets_sent_bytes": sent}


async def flood(port: int, until: float, run_id: str, secret: bytes) -> dict[str, int]:
    clients = [await StoreClient.connect(HOST, port, run_id, secret) for _ in range(50)]

    async def one(client: StoreClient, tag: int) -> int:
        done = 0
        while time.monotonic() < until:
            keys = [f"flood/{tag}/{j}" for j in range(256)]
            await asyncio.gather(*(client.put(k, "x" * 64) for k in keys))
            await asyncio.gather(*(client.get(k) for k in keys))
            done += 512
        return done

    done = await asyncio.gather(*(one(c, i) for i, c in enumerate(clients)))
    await asyncio.gather(*(c.close() for c in clients))
    return {"requests": sum(done)}


def main() -> None:
    mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    until = time.monotonic() + seconds
    creds = (sys.argv[4], sys.argv[5].encode()) if len(sys.argv) > 5 else ("", b"")
    print(json.dumps({"ready": mode}), flush=True)
    if mode == "big-frames":
        result = big_frames(port, until)
    elif mode == "idle":
        result = idle(port, until)
    elif mode == "no-read":
        result = no_read(port, until, *creds)
    else:
        result = asyncio.run(flood(port, until, *creds))
    print(json.dumps(result), flush=True)


main()
