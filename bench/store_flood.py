"""Store under load: request throughput and a well-behaved client's latency, 50 flooders.

Stdlib + rallypoint. One ``StoreServer`` in its own process (``workers/store_server.py``),
``--clients`` flooding connections in another (``workers/store_flooder.py``: each
pipelines batches of ``--batch`` puts then as many gets), and one probe client here doing a ``get``
every 10 ms. Prints the flooders' request throughput and the probe's p50, p99 and worst
round-trip latency. See bench/README.md, section "Store under flood".

``--trees SRC ...`` runs the server and the flooders from each source tree in turn (their
``PYTHONPATH``), alternating run by run, so a before/after comparison shares the machine's
load; the probe client is always this interpreter's rallypoint.

Usage: ``python bench/store_flood.py [--clients 50] [--seconds 10] [--runs 3] [--trees A B]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rallypoint.store import StoreClient

WORKERS = Path(__file__).resolve().parent / "workers"
PROBE_GAP_S = 0.01


def start(tree: str | None, script: str, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(WORKERS / script), *args]
    env = dict(os.environ) if tree is None else {**os.environ, "PYTHONPATH": tree}
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def first_json(proc: subprocess.Popen[str]) -> dict[str, float]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{proc.args!r} ended before it printed anything")
    result: dict[str, float] = json.loads(line)
    return result


async def probe(port: int, until: float) -> list[float]:
    client = await StoreClient.connect("127.0.0.1", port, "bench", None)
    await client.put("probe", "here")
    latencies = []
    while time.monotonic() < until:
        sent = time.perf_counter()
        await client.get("probe")
        latencies.append(time.perf_counter() - sent)
        await asyncio.sleep(PROBE_GAP_S)
    await client.close()
    return latencies


def one_run(tree: str | None, clients: int, seconds: float, batch: int) -> dict[str, float]:
    server = start(tree, "store_server.py")
    try:
        port = int(first_json(server)["port"])
        args = (str(port), str(clients), str(seconds), str(batch))
        flooder = start(tree, "store_flooder.py", *args)
        first_json(flooder)  # all connected
        latencies = asyncio.run(probe(port, time.monotonic() + seconds))
        done = first_json(flooder)
        flooder.wait(30)
    finally:
        server.kill()
        server.wait()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests_per_s": done["requests"] / done["seconds"],
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * cuts[98],
        "worst_ms": 1000 * max(latencies),
        "probes": len(latencies),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=16, help="requests each flooder pipelines")
    p.add_argument("--trees", nargs="+", help="source trees to compare (PYTHONPATH)")
    args = p.parse_args()
    trees = args.trees or [None]
    runs: dict[str | None, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree in trees:
            run = one_run(tree, args.clients, args.seconds, args.batch)
            runs[tree].append(run)
            print(json.dumps({"tree": tree, **{k: round(v, 2) for k, v in run.items()}}))
    keys = ("requests_per_s", "p50_ms", "p99_ms", "worst_ms")
    print("| tree | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for tree, samples in runs.items():
        cells = (f"{statistics.median(r[k] for r in samples):.1f}" for k in keys)
        print(f"| {tree or 'this'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
