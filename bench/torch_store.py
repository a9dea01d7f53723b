"""The agent's torch store against torch's own C++ TCPStore server, under the same load.

Each server runs in a process of its own (ours: ``TorchStoreHost``, as the agent runs it;
torch's: ``TCPStore(is_master=True)``, libuv, as torchrun's agent runs it). The load comes
from one client process with many threads, each with its own torch ``TCPStore`` client
(torch's bindings release the interpreter lock while they talk to the server).

Measures, each repeated ``--runs`` times per server, alternating servers, medians kept:

* ``requests/s``: 8 threads doing ``add`` as fast as they can for ``--seconds``, and the
  server process's CPU time per request meanwhile (the load-independent cost: the
  client threads share the machine's cores with the server);
* ``gloo init, N``: N threads (ranks) connect, then each sets its address and gets every
  other rank's (``get`` = WAIT + GET, two round trips), as gloo's full-mesh rendezvous
  does: N*(N-1) gets; the time from the first set to the last get;
* ``unique-id broadcast, N``: N-1 threads get one key that rank 0 sets once they all
  connected, as NCCL's unique-id exchange does.

Usage: ``python bench/torch_store.py [--runs 3] [--sizes 8,64,512] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

SERVERS = {
    "rallypoint": (
        "import sys; from rallypoint.torchstore.host import TorchStoreHost\n"
        "h = TorchStoreHost.listen(0); print(h.port, flush=True); sys.stdin.read(); h.release()"
    ),
    "torch": (
        "import sys; from datetime import timedelta; import torch.distributed as d\n"
        "s = d.TCPStore('127.0.0.1', 0, 1, True, timedelta(seconds=600), wait_for_workers=False)"
        "\nprint(s.port, flush=True); sys.stdin.read()"
    ),
}


def start_server(name: str) -> tuple[subprocess.Popen[str], int]:
    """Start one server process; return it and its port."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVERS[name]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Let the server end (its stdin closes)."""
    proc.communicate(timeout=60)


def clients(port: int, n: int) -> list[object]:
    """``n`` torch clients, connected in parallel."""
    import torch.distributed as dist

    made: list[object] = [None] * n

    def connect(i: int) -> None:
        made[i] = dist.TCPStore("127.0.0.1", port, n, False, timedelta(seconds=600))

    run_threads(n, connect)
    return made


def run_threads(n: int, work: Callable[[int], None]) -> float:
    """Run ``work(i)`` in ``n`` threads started together; return the wall time taken."""
    gate = threading.Barrier(n + 1)

    def body(i: int) -> None:
        gate.wait()
        work(i)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_per_second(port: int, seconds: float, n: int = 8) -> tuple[float, int]:
    """Round trips per second of ``n`` threads doing ``add``, and how many there were."""
    stores = clients(port, n)
    counts = [0] * n
    deadline = time.perf_counter() + seconds

    def hammer(i: int) -> None:
        store = stores[i]
        while time.perf_counter() < deadline:
            store.add("counter", 1)  # type: ignore[attr-defined]
            counts[i] += 1

    elapsed = run_threads(n, hammer)
    return sum(counts) / elapsed, sum(counts)


def gloo_init(port: int, n: int, run: int) -> float:
    """Seconds for ``n`` ranks to set their address and get every other rank's."""
    stores = clients(port, n)

    def rank(i: int) -> None:
        store = stores[i]
        store.set(f"g{run}/rank_{i}", f"address-of-{i}:{40000 + i}".encode())  # type: ignore[attr-defined]
        for peer in range(n):
            if peer != i:
                store.get(f"g{run}/rank_{peer}")  # type: ignore[attr-defined]

    return run_threads(n, rank)


def unique_id(port: int, n: int, run: int) -> float:
    """Seconds for ``n - 1`` ranks to get the key rank 0 sets."""
    stores = clients(port, n)

    def rank(i: int) -> None:
        store = stores[i]
        if i == 0:
            store.set(f"u{run}/id", b"x" * 128)  # type: ignore[attr-defined]
        else:
            store.get(f"u{run}/id")  # type: ignore[attr-defined]

    return run_threads(n, rank)


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Every measure, ``args.runs`` times per server, servers alternating."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in SERVERS}
    for run in range(args.runs):
        for name in SERVERS:
            proc, port = start_server(name)
            try:
                rows = samples[name]
                before = cpu_seconds(proc.pid)
                rate, count = requests_per_second(port, args.seconds)
                cpu_us = (cpu_seconds(proc.pid) - before) / count * 1e6
                rows.setdefault("requests/s (8 threads, add)", []).append(rate)
                rows.setdefault("server CPU per request (us)", []).append(cpu_us)
                for n in args.sizes:
                    rows.setdefault(f"gloo init, N={n} (s)", []).append(gloo_init(port, n, run))
                    rows.setdefault(f"unique-id broadcast, N={n} (s)", []).append(
                        unique_id(port, n, run)
                    )
            finally:
                stop_server(proc)
            print(f"run {run + 1}/{args.runs} {name} done", file=sys.stderr, flush=True)
    return samples


def table(samples: dict[str, dict[str, list[float]]]) -> str:
    """Markdown: medians per server; ratio torch / rallypoint (times), rallypoint / torch (rates).

    As everywhere in bench/, a ratio above 1 means rallypoint is better, below 1 worse.
    """
    lines = ["| measure | rallypoint | torch C++ | ratio |", "|---|---|---|---|"]
    for measure_name in samples["torch"]:
        ours = statistics.median(samples["rallypoint"][measure_name])
        theirs = statistics.median(samples["torch"][measure_name])
        ratio = ours / theirs if measure_name.startswith("requests") else theirs / ours
        lines.append(f"| {measure_name} | {ours:,.3f} | {theirs:,.3f} | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[8, 64, 512]
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    samples = measure(args)
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1))
    print(table(samples))


if __name__ == "__main__":
    main()
