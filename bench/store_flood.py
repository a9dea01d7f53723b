"""Store under load: request throughput and a well-behaved client's latency, 50 flooders.

Stdlib + rallypoint. One ``StoreServer`` in its own process (``workers/store_server.py``),
``--clients`` flooding connections in another (``workers/store_flooder.py``: each
pipelines batches of ``--batch`` puts then as many gets), and one probe client in a third
(``workers/store_probe.py``) doing a ``get`` every 10 ms. Prints the flooders' request
throughput and the probe's p50, p99 and worst round-trip latency. See bench/README.md,
section "Store under flood".

``--trees SRC ...`` runs the server, the flooders and the probe from each source tree in turn (their
``PYTHONPATH``), alternating run by run, so a before/after comparison shares the machine's
load.

Usage: ``python bench/store_flood.py [--clients 50] [--seconds 10] [--runs 3] [--trees A B]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

WORKERS = Path(__file__).resolve().parent / "workers"


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


def one_run(tree: str | None, clients: int, seconds: float, batch: int) -> dict[str, float]:
    server = start(tree, "store_server.py")
    try:
        port = str(int(first_json(server)["port"]))
        probe = start(tree, "store_probe.py", port, str(seconds))
        first_json(probe)  # connected
        flooder = start(tree, "store_flooder.py", port, str(clients), str(seconds), str(batch))
        first_json(flooder)  # all connected
        assert probe.stdin is not None
        probe.stdin.write("go\n")
        probe.stdin.flush()
        latencies: list[float] = first_json(probe)["latencies"]  # type: ignore[assignment]
        done = first_json(flooder)
        flooder.wait(30)
        probe.wait(30)
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
