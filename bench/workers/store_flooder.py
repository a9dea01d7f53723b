"""Flood one store with requests from many connections, as fast as they are answered.

Usage: ``store_flooder.py PORT CLIENTS SECONDS BATCH``. Each client pipelines batches
of BATCH puts then BATCH gets; prints ``{"requests": N, "seconds": S}`` at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from rallypoint.store import StoreClient


async def flood(client: StoreClient, tag: int, until: float, batch: int) -> int:
    done = 0
    value = "x" * 64
    while time.monotonic() < until:
        keys = [f"flood/{tag}/{j}" for j in range(batch)]
        await asyncio.gather(*(client.put(k, value) for k in keys))
        await asyncio.gather(*(client.get(k) for k in keys))
        done += 2 * batch
    return done


async def main(port: int, clients: int, seconds: float, batch: int) -> None:
    conns = [await StoreClient.connect("127.0.0.1", port, "bench", None) for _ in range(clients)]
    print(json.dumps({"connected": clients}), flush=True)
    start = time.monotonic()
    counts = await asyncio.gather(
        *(flood(c, i, start + seconds, batch) for i, c in enumerate(conns))
    )
    elapsed = time.monotonic() - start
    print(json.dumps({"requests": sum(counts), "seconds": elapsed}), flush=True)
    await asyncio.gather(*(c.close() for c in conns))


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
