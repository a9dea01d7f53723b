"""``--dry-run``: what a launch would do, worked out without starting anything.

Design note: the plan reuses the functions the agent itself calls
(:func:`~rallypoint.agent.worker_env.worker_env`,
:func:`~rallypoint.workers.command.worker_argv`, the rendezvous timeouts), so
what it shows cannot drift from what a launch does. Nothing is bound, spawned
or written. A single node knows its whole world; on several nodes the values
the rendezvous decides (ranks, world sizes, MASTER_ADDR/PORT) are shown as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from rallypoint.agent.worker_env import RENDEZVOUS_KEYS, WorkerPlace, worker_env
from rallypoint.cli.settings import Launch
from rallypoint.config import LaunchConfig
from rallypoint.health import ENABLE_VARIABLE, FILE_VARIABLE
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.command import worker_argv

MAX_SHOWN = 16  # local ranks shown in full; the others follow the same pattern
FROM_RENDEZVOUS = "(set by the rendezvous)"
FREE_PORT = "(a free port, chosen at start)"
ERROR_FILE = "(in the run's log folder, made at start)"
TIMER_FILE = "(a named pipe in $TMPDIR, made at start)"


@dataclass(frozen=True, slots=True)
class RankPlan:
    """One local rank: its command, and the variables the launcher sets or changes."""

    local_rank: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class DryRun:
    """The resolved launch: settings as name/value pairs, and the first local ranks."""

    settings: tuple[tuple[str, object], ...]
    ranks: tuple[RankPlan, ...]
    hidden_ranks: int


def _single_round(config: LaunchConfig, host: str) -> RendezvousResult:
    """The round a single node gets, as :class:`SingleNodeRendezvous` makes it."""
    static = config.rdzv_backend == "static"
    nproc = config.nproc_per_node
    addr = (config.master_addr or "127.0.0.1") if static else host
    port = (config.master_port or 0) if static else 0
    return RendezvousResult(0, 0, 1, 0, nproc, 0, nproc, addr, port)


def _settings(launch: Launch) -> list[tuple[str, object]]:
    config = launch.config
    pairs: list[tuple[str, object]] = [
        (f.name, getattr(config, f.name)) for f in fields(config) if f.name != "rdzv_secret"
    ]
    pairs.append(("rdzv_secret", "(set)" if config.rdzv_secret else None))
    pairs.append(("entrypoint", launch.entrypoint.kind.value))
    pairs.append(("target", launch.entrypoint.target))
    if config.max_nodes > 1:
        from rallypoint.rendezvous.factory import timeouts_of  # checks the --rdzv-conf times

        pairs.append(("rendezvous timeouts", timeouts_of(config)))
    return pairs


def _rank(
    launch: Launch, rdzv: RendezvousResult, local_rank: int, environ: Mapping[str, str]
) -> RankPlan:
    base = launch.worker_base_env
    timers = base.get(ENABLE_VARIABLE) == "1"
    place = WorkerPlace(
        local_rank, 0, ERROR_FILE, base.get(FILE_VARIABLE, TIMER_FILE) if timers else ""
    )
    env = worker_env(launch.config, rdzv, place, base)
    if launch.config.max_nodes > 1:
        env.update(dict.fromkeys(RENDEZVOUS_KEYS, FROM_RENDEZVOUS))
    elif rdzv.master_port == 0:
        env["MASTER_PORT"] = FREE_PORT
    changed = tuple((k, v) for k, v in env.items() if environ.get(k) != v)
    argv = worker_argv(launch.entrypoint, local_rank, base, payload=None)
    return RankPlan(local_rank, tuple(argv), changed)


def plan(launch: Launch, host: str, environ: Mapping[str, str]) -> DryRun:
    """What ``launch`` would run on this node.

    Args:
        launch: the launch as the command line asked for it.
        host: this node's name, as the agent would give it.
        environ: the launcher's environment: each rank shows what differs from it.

    Raises:
        ConfigError: a setting only the rendezvous reads is malformed.
    """
    rdzv = _single_round(launch.config, host)
    shown = min(launch.config.nproc_per_node, MAX_SHOWN)
    ranks = tuple(_rank(launch, rdzv, rank, environ) for rank in range(shown))
    return DryRun(tuple(_settings(launch)), ranks, launch.config.nproc_per_node - shown)
