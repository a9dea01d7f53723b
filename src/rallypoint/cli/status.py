"""``rallypoint status``: a running job's members, round, restarts, ranks and (``--stacks``) stacks.

Design note: two sources, one snapshot shape (a dict as the agent's
:mod:`rallypoint.agent.status` writes it; ``ranks`` a list of per-rank dicts):

- on the same node, every agent's ``status.sock`` in a run folder under
  ``--log-dir`` (else ``$TMPDIR/torchelastic_*``): everything the agent holds,
  each rank's last output line and latest full stack included;
- from any node, with ``--rdzv-endpoint``, ``--rdzv-id`` and ``$RALLYPOINT_SECRET``:
  the rendezvous store's records (the round header, the members' join records,
  the restart counter, and each node's stack digests, ``stacks/<node>``), so a
  rank's stack there is its digest's frames (where it is, and the collective
  it waits in), not the whole stack, and its output is not shared.

``rallypoint status`` is this command only when ``status`` is the first argument
and no file named ``status`` exists in the working directory, so
``rallypoint status.py`` and ``rallypoint status`` for a script called ``status``
still launch them (torchrun compatibility; docs/hangs.md).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rallypoint.agent.status import SOCKET_NAME, reachable_path
from rallypoint.cli import output
from rallypoint.cli.settings import SECRET_ENV
from rallypoint.errors import UsageError
from rallypoint.hangs.board import STACKS_PREFIX, NodeDigests
from rallypoint.ids import temp_root

if TYPE_CHECKING:
    from rallypoint.store import KeyValueStore
    from rallypoint.store.messages import KeyValue

Snapshot = dict[str, object]
READ_LIMIT = 64 << 20


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"status: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rallypoint status", exit_on_error=False)
    parser.add_argument("--log-dir", "--log_dir", default=None)
    parser.add_argument("--rdzv-endpoint", "--rdzv_endpoint", default=None)
    parser.add_argument("--rdzv-id", "--rdzv_id", default=None)
    parser.add_argument("--stacks", action="store_true")
    parser.add_argument("--json", action="store_true")
    return parser


def status_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Print the status; 0, or 1 when no job answers, 2 on bad input."""
    try:
        args = _parser().parse_args(list(argv))
        snapshots = _gather(args, environ)
    except UsageError as exc:
        output.usage_error(str(exc))
        return 2
    except StatusError as exc:
        output.launch_error(str(exc))
        return 1
    output.status(snapshots, args.stacks, args.json)
    return 0


class StatusError(Exception):
    """No job could be asked, or it refused."""


def _gather(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Snapshot]:
    if args.rdzv_endpoint or args.rdzv_id:
        if not (args.rdzv_endpoint and args.rdzv_id):
            raise UsageError("status: --rdzv-endpoint and --rdzv-id go together")
        return [asyncio.run(_from_store(args.rdzv_endpoint, args.rdzv_id, environ))]
    base = args.log_dir or os.path.join(temp_root(environ), "torchelastic_*")
    found = [_ask(path, args.stacks) for path in sorted(glob.glob(f"{base}/*/{SOCKET_NAME}"))]
    live = [s for s in found if s is not None]
    if not live:
        raise StatusError(f"status: no running job found under {base}")
    return live


def _ask(path: str, stacks: bool) -> Snapshot | None:
    """One agent's snapshot from its socket (None when nobody listens there any more)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10.0)
        try:
            with reachable_path(Path(path)) as address:
                sock.connect(address)
            sock.sendall(json.dumps({"stacks": stacks}).encode() + b"\n")
            chunks, size = [], 0
            while size <= READ_LIMIT and (chunk := sock.recv(1 << 16)):
                chunks.append(chunk)
                size += len(chunk)
        except OSError:
            return None
    try:
        data = json.loads(b"".join(chunks))  # past READ_LIMIT: cut, so refused here
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _from_store(endpoint: str, run_id: str, environ: Mapping[str, str]) -> Snapshot:
    from rallypoint.endpoints import C10D_PORT, parse_endpoint
    from rallypoint.store import StoreClient, StoreError, secret_from_env

    where = parse_endpoint(endpoint, C10D_PORT)
    secret = secret_from_env(SECRET_ENV, environ) if environ.get(SECRET_ENV) else None
    try:
        client = await StoreClient.connect(where.host, where.port, run_id, secret, timeout=10)
    except (StoreError, OSError) as exc:
        raise StatusError(f"status: the rendezvous store at {endpoint}: {exc}") from exc
    try:
        return await _store_snapshot(client, run_id)
    except StoreError as exc:
        raise StatusError(f"status: the rendezvous store at {endpoint}: {exc}") from exc
    finally:
        await client.close()


async def _store_snapshot(store: KeyValueStore, run_id: str) -> Snapshot:
    from rallypoint.rendezvous.records import (
        JOIN_PREFIX,
        RESTARTS_KEY,
        ROUND_KEY,
        decode_header,
        decode_join,
    )

    data: Snapshot = {"run_id": run_id, "source": "store"}
    header = await store.get(ROUND_KEY)
    if header is not None:
        round_ = decode_header(header.value)
        data.update(round=round_.round, world_size=round_.world_size)
    joined = (await store.range(JOIN_PREFIX)).entries
    data["members"] = len(joined)
    data["member_nodes"] = sorted(decode_join(kv.value)[0].node_id for kv in joined)
    restarts = await store.get(RESTARTS_KEY)
    data["restarts"] = int(restarts.value) if restarts is not None else 0
    data["ranks"] = _digest_ranks((await store.range(STACKS_PREFIX)).entries, time.time())
    return data


def _digest_ranks(entries: Sequence[KeyValue], now: float) -> list[dict[str, object]]:
    ranks: list[dict[str, object]] = []
    for kv in entries:
        node = kv.key.removeprefix(STACKS_PREFIX)
        try:
            record = NodeDigests.from_text(node, kv.value)
        except ValueError:
            continue
        ranks.extend(output.digest_status(node, r, max(0.0, now - r.since)) for r in record.ranks)
    return sorted(ranks, key=lambda r: int(str(r["rank"])))
