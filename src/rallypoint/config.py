"""Frozen, validated configuration of one launch.

This is the one place where user input is checked: a :class:`LaunchConfig`
that exists is a valid one. It is also the public Python API's configuration,
with the field names and defaults of ``torch.distributed.launcher.api.LaunchConfig``
(except where docs/differences.md says otherwise).
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rallypoint.errors import ConfigError

BACKENDS = ("static", "c10d", "etcd", "etcd-v2")
EVENT_LOG_HANDLERS = ("null", "console", "dynamic_rendezvous")
DEFAULT_SHUTDOWN_TIMEOUT = 30
DEFAULT_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT"


class StdMask(enum.IntFlag):
    """Which standard streams of a worker a redirect or tee applies to."""

    NONE = 0
    OUT = 1
    ERR = 2
    ALL = 3


@dataclass(frozen=True, slots=True)
class StdSpec:
    """A ``-r``/``-t`` value: one mask for every rank, or masks per local rank."""

    default: StdMask = StdMask.NONE
    per_rank: tuple[tuple[int, StdMask], ...] = ()

    def for_rank(self, local_rank: int) -> StdMask:
        """The mask that applies to ``local_rank``."""
        return dict(self.per_rank).get(local_rank, self.default)


class EntrypointKind(enum.Enum):
    """How a worker's program is started."""

    SCRIPT = "script"  # python -u script args
    MODULE = "module"  # python -u -m module args
    BINARY = "binary"  # the program itself (--no-python, or an API str entrypoint)
    RUN_PATH = "run_path"  # runpy.run_path in a spawned interpreter
    CALLABLE = "callable"  # a Python function (API only)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """Everything the agent needs to run one node's part of a job.

    Field names and defaults follow torch's ``LaunchConfig``; the CLI builds one
    with torchrun's CLI defaults instead. ``rdzv_configs`` values are strings.
    """

    min_nodes: int
    max_nodes: int
    nproc_per_node: int
    run_id: str = ""
    role: str = "default_role"
    rdzv_endpoint: str = ""
    rdzv_backend: str = "c10d"
    rdzv_configs: Mapping[str, str] = field(default_factory=dict)
    max_restarts: int = 3
    monitor_interval: float = 0.1
    start_method: str = "spawn"
    log_line_prefix_template: str | None = None
    local_addr: str | None = None
    event_log_handler: str = "null"
    signals_to_handle: str = DEFAULT_SIGNALS
    virtual_local_rank: bool = False
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT
    log_dir: str | None = None
    redirects: StdSpec = StdSpec()
    tee: StdSpec = StdSpec()
    local_ranks_filter: frozenset[int] | None = None
    duplicate_stdout_filters: tuple[str, ...] = ()
    duplicate_stderr_filters: tuple[str, ...] = ()
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    numa_binding: str | None = None
    rdzv_secret: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "rdzv_configs",
            MappingProxyType({k: str(v) for k, v in self.rdzv_configs.items()}),
        )
        _check(
            self.min_nodes >= 1, f"--nnodes: the minimum must be at least 1, got {self.min_nodes}"
        )
        _check(
            self.min_nodes <= self.max_nodes,
            f"--nnodes={self.min_nodes}:{self.max_nodes}: MIN must not exceed MAX",
        )
        _check(
            self.nproc_per_node >= 1,
            f"--nproc-per-node must be at least 1, got {self.nproc_per_node}",
        )
        _check(self.max_restarts >= 0, f"--max-restarts must be 0 or more, got {self.max_restarts}")
        _check(
            self.monitor_interval > 0,
            f"--monitor-interval must be above 0, got {self.monitor_interval}",
        )
        _check(
            self.shutdown_timeout >= 0,
            f"--shutdown-timeout must be 0 or more, got {self.shutdown_timeout}",
        )
        _check(
            self.rdzv_backend in BACKENDS,
            f"--rdzv-backend={self.rdzv_backend!r} is unknown; use one of {', '.join(BACKENDS)}",
        )
        _check(
            self.event_log_handler in EVENT_LOG_HANDLERS,
            f"--event-log-handler={self.event_log_handler!r} is unknown; "
            f"use one of {', '.join(EVENT_LOG_HANDLERS)}",
        )
        _check(bool(self.role), "--role must not be empty")

    @property
    def handled_signals(self) -> tuple[signal.Signals, ...]:
        """The signals to trap and forward; unknown names are skipped (as torchrun does)."""
        return parse_signal_names(self.signals_to_handle)


def parse_signal_names(names: str) -> tuple[signal.Signals, ...]:
    """``"SIGTERM,SIGINT"`` -> the signals; names that do not exist are skipped."""
    found = (getattr(signal.Signals, n.strip(), None) for n in names.split(","))
    return tuple(s for s in found if s is not None)


@dataclass(frozen=True, slots=True)
class Entrypoint:
    """What each worker runs: a script, module, program, run_path script or callable."""

    kind: EntrypointKind
    target: str
    args: tuple[str, ...] = ()
    function: object = None  # the callable for EntrypointKind.CALLABLE

    @property
    def name(self) -> str:
        """The name torchrun's summary uses for this entrypoint."""
        if self.kind is EntrypointKind.RUN_PATH:
            return "run_script_path"
        if self.kind is EntrypointKind.CALLABLE:
            return getattr(self.function, "__name__", repr(self.function))
        return self.target
