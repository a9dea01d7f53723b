"""A standalone rallypoint store for the simulated rendezvous.

Prints ``{"port": P}`` once listening and serves until stdin closes (or
SIGTERM). ``--profile PATH`` writes a cProfile of the whole process; ``--stats PATH``
(or ``$RDZV_STORE_STATS``) the store's revision, key count and bytes when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simcommon import dump_and_exit, raise_fd_limit, read_line, start_profile

from rallypoint.store import StoreServer
from rallypoint.store.state import StoreState


async def serve(args: argparse.Namespace) -> None:
    profile = start_profile(args.profile)
    server = StoreServer("127.0.0.1", 0, args.run_id, None)

    def leave(code: int) -> None:
        if args.stats:
            write_stats(server.state, Path(args.stats))
        dump_and_exit(profile, args.profile, code)

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, leave, 3)
    await server.start()
    print(json.dumps({"port": server.port, "nofile": raise_fd_limit()}), flush=True)
    while await read_line():
        pass
    leave(0)


def write_stats(state: StoreState, path: Path) -> None:
    stats = {
        "revision": state.revision,
        "keys": len(state.range("")[0]),
        "data_bytes": getattr(state, "data_bytes", None),  # None on a tree without quotas
        "history_bytes": getattr(state, "history_bytes", None),
    }
    path.write_text(json.dumps(stats) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-id", default="bench")
    p.add_argument("--profile")
    p.add_argument(
        "--stats", default=os.environ.get("RDZV_STORE_STATS"), help="write the store's size"
    )
    raise_fd_limit()
    asyncio.run(serve(p.parse_args()))


main()
