"""Many simulated nodes in one process, each a real ``StoreRendezvous``.

Every node has its own ``StoreClient`` connection, as an agent would. The
process connects all of them, prints ``{"ready": seconds}``, waits for a line
on stdin (the harness's barrier across processes), then runs ``start()`` and
``next_round()`` for every node at once and prints one JSON line: when the
last node got its result (``time.time()``), the group ranks it got, the world
sizes seen, and errors by type.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simcommon import dump_and_exit, on_sigterm, raise_fd_limit, read_line, start_profile

from rallypoint.clock import SystemClock
from rallypoint.rendezvous.dynamic import StoreRendezvous, Timeouts
from rallypoint.rendezvous.machine import Settings
from rallypoint.rendezvous.records import NodeRecord
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.store import StoreClient

CONNECT_AT_ONCE = 64  # the server's listen backlog is 100


async def connect_all(args: argparse.Namespace) -> list[StoreClient]:
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def one() -> StoreClient:
        async with gate:
            return await StoreClient.connect(
                "127.0.0.1", args.port, args.run_id, None, timeout=args.timeout
            )

    return list(await asyncio.gather(*(one() for _ in range(args.count))))


def node(args: argparse.Namespace, j: int) -> NodeRecord:
    host = args.index * args.count + j
    addr = f"10.{host >> 16 & 255}.{host >> 8 & 255}.{host & 255}"
    return NodeRecord(f"{addr}_{1000 + j}_sim", addr, 1000 + j, 1, "default", 29500)


async def one_node(
    args: argparse.Namespace, client: StoreClient, j: int
) -> tuple[float, RendezvousResult]:
    settings = Settings(args.total, args.total, last_call_timeout=30.0)
    timeouts = Timeouts(join=args.timeout, last_call=30.0, lease_ttl=args.lease_ttl)
    rdzv = StoreRendezvous(client, None, node(args, j), settings, timeouts, SystemClock())
    await rdzv.start()
    result = await rdzv.next_round()
    return time.time(), result


def summary(outcomes: list[object], began: float) -> dict[str, object]:
    done = [o for o in outcomes if isinstance(o, tuple)]
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    errors = collections.Counter(type(o).__name__ for o in failed)
    times = [t for t, _ in done]
    return {
        "began": began,
        "first": min(times, default=None),
        "last": max(times, default=None),
        "ranks": [r.group_rank for _, r in done],
        "worlds": sorted({r.group_world_size for _, r in done}),
        "errors": dict(errors),
        "first_error": repr(failed[0]) if failed else None,
    }


async def run(args: argparse.Namespace) -> None:
    profile = start_profile(args.profile)
    on_sigterm(profile, args.profile)
    t0 = time.monotonic()
    clients = await connect_all(args)
    print(json.dumps({"ready": time.monotonic() - t0}), flush=True)
    await read_line()
    began = time.time()
    outcomes = await asyncio.gather(
        *(one_node(args, c, j) for j, c in enumerate(clients)), return_exceptions=True
    )
    print(json.dumps(summary(list(outcomes), began)), flush=True)
    dump_and_exit(profile, args.profile)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True, help="nodes in this process")
    p.add_argument("--total", type=int, required=True, help="nodes in the whole job")
    p.add_argument("--index", type=int, default=0, help="this process's number")
    p.add_argument("--run-id", default="bench")
    p.add_argument("--lease-ttl", type=float, default=Timeouts().lease_ttl)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--profile")
    args = p.parse_args()
    raise_fd_limit()
    asyncio.run(run(args))


main()
