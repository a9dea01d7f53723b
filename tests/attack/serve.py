"""A store server in a process of its own, for the attack tests.

Usage: ``serve.py CONFIG_JSON``: ``run_id``, ``secret`` (text or null), and optional
``limits`` / ``quota`` (fields of ``Limits`` / ``Quota``) and ``nofile`` (a soft
``RLIMIT_NOFILE`` to run under). Prints ``{"port": P}`` once listening, logs to stderr at
INFO, and serves until its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
from dataclasses import replace

from rallypoint.store import StoreServer
from rallypoint.store.server import DEFAULT_LIMITS, Quota


async def serve(config: dict[str, object]) -> None:
    secret = config.get("secret")
    server = StoreServer(
        "127.0.0.1",
        0,
        str(config["run_id"]),
        None if secret is None else str(secret).encode(),
        limits=replace(DEFAULT_LIMITS, **config.get("limits", {})),  # type: ignore[arg-type]
        quota=Quota(**config.get("quota", {})),  # type: ignore[arg-type]
    )
    await server.start()
    print(json.dumps({"port": server.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()


def main() -> None:
    config = json.loads(sys.argv[1])
    if "nofile" in config:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(config["nofile"]), hard))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config))


main()
