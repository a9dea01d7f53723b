"""A well-behaved store client: one ``get`` every 10 ms; prints its round-trip times.

Usage: ``store_probe.py PORT SECONDS``; prints ``{"ready": true}`` once connected (then
waits for a line on stdin to start) and ``{"latencies": [...]}`` (seconds) at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from rallypoint.store import StoreClient

GAP_S = 0.01


async def main(port: int, seconds: float) -> None:
    client = await StoreClient.connect("127.0.0.1", port, "bench", None)
    await client.put("probe", "here")
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sent = time.perf_counter()
        await client.get("probe")
        latencies.append(time.perf_counter() - sent)
        await asyncio.sleep(GAP_S)
    await client.close()
    print(json.dumps({"latencies": latencies}), flush=True)


asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
