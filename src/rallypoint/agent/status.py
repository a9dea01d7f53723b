"""``rallypoint status`` on the agent's side: a unix socket in the run folder answers it.

Design note: the socket is ``<run folder>/status.sock``; the run folder is
0700, so only the job's user can reach it. A client writes one JSON line
(``{"stacks": true}``) and reads one JSON document, the snapshot, then the
agent closes the connection. The snapshot is built on the agent's loop from
what it already holds (the round, the attempt's workers, the stack channels'
latest samples), so answering costs nothing while nobody asks. A client that
says nothing within ``REQUEST_SECONDS`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rallypoint.agent.job import Job
    from rallypoint.agent.seams import RunningAttempt
    from rallypoint.agent.standbys import StandbyPool
    from rallypoint.rendezvous.result import RendezvousResult

logger = logging.getLogger(__name__)

SOCKET_NAME = "status.sock"
REQUEST_SECONDS = 5.0
MAX_REQUEST = 4096
SUN_PATH_MAX = 107  # sockaddr_un's sun_path is 108 bytes, the last one a NUL


@contextlib.contextmanager
def reachable_path(path: Path) -> Iterator[str]:
    """``path`` as a unix socket address: through ``/proc/self/fd`` when it is too long.

    A run folder under a deep ``--log-dir`` or ``$TMPDIR`` can name a socket longer
    than ``sun_path`` holds; binding or connecting through an open descriptor of its
    folder reaches the same file with a short address.
    """
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


Snapshot = Callable[[bool], dict[str, object]]


class StatusServer:
    """Answers ``rallypoint status`` on this node from ``snapshot(stacks)``."""

    def __init__(self, run_dir: Path, snapshot: Snapshot) -> None:
        self.path = run_dir / SOCKET_NAME
        self._snapshot = snapshot
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (a failure is logged: the job runs on without a status socket)."""
        try:
            with reachable_path(self.path) as address:
                self._server = await asyncio.start_unix_server(self._serve, address)
        except OSError as exc:
            logger.warning("no status socket at %s: %s", self.path, exc)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_SECONDS)
            request = json.loads(line[:MAX_REQUEST] or b"{}")
            stacks = bool(request.get("stacks")) if isinstance(request, dict) else False
            writer.write(json.dumps(self._snapshot(stacks)).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError) as exc:
            logger.debug("status request dropped: %r", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        """Stop answering and remove the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self.path.unlink(missing_ok=True)


def snapshot(
    job: Job,
    rdzv: RendezvousResult | None,
    attempt: RunningAttempt | None,
    stacks: bool,
    standbys: StandbyPool | None = None,
) -> dict[str, object]:
    """What this node knows: the round, its workers and standbys, and (``stacks``) stacks."""
    data: dict[str, object] = {"node": job.host, "run_id": job.config.run_id}
    if rdzv is not None:
        data.update(round=rdzv.round, members=rdzv.group_world_size, restarts=rdzv.restarts)
        data["world_size"] = rdzv.world_size
    if attempt is not None:
        data["restarts"] = attempt.restart_count
        data["ranks"] = [{"node": job.host, **r} for r in attempt.rank_status(stacks)]
    if standbys is not None:
        data["standbys"] = standbys.describe()
    return data
