"""A standalone rallypoint store for the simulated rendezvous.

Prints ``{"port": P}`` once listening and serves until stdin closes (or
SIGTERM). ``--profile PATH`` writes a cProfile of the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simcommon import dump_and_exit, on_sigterm, raise_fd_limit, read_line, start_profile

from rallypoint.store import StoreServer


async def serve(args: argparse.Namespace) -> None:
    profile = start_profile(args.profile)
    on_sigterm(profile, args.profile)
    server = StoreServer("127.0.0.1", 0, args.run_id, None)
    await server.start()
    print(json.dumps({"port": server.port, "nofile": raise_fd_limit()}), flush=True)
    while await read_line():
        pass
    dump_and_exit(profile, args.profile)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-id", default="bench")
    p.add_argument("--profile")
    raise_fd_limit()
    asyncio.run(serve(p.parse_args()))


main()
