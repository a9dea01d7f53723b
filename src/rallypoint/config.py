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

from rallypoint.endpoints import C10D_PORT, check_port, parse_endpoint
from rallypoint.errors import ConfigError
from rallypoint.signals import DEFAULT_SIGNALS_TEXT, UNCATCHABLE

BACKENDS = ("static", "c10d", "etcd", "etcd-v2")
ETCD_BACKENDS = ("etcd", "etcd-v2")
EVENT_LOG_HANDLERS = ("null", "console", "dynamic_rendezvous")
DEFAULT_SHUTDOWN_TIMEOUT = 30
DEFAULT_SIGNALS = DEFAULT_SIGNALS_TEXT
MAX_RUN_ID = 200  # bytes: a file name holds 255, and the folder adds _<12 random>


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
    forward_signals: str = ""  # rallypoint only: passed on to the workers as notices
    warm_modules: tuple[str, ...] = ()  # standbys import these; () for no standbys
    agent_store: bool = True  # False: worker rank 0 hosts torch's store (rendezvous/ports.py)
    hang_timeout: float | None = None  # rallypoint only: None reports hangs, never stops them
    stack_period: float = 3.0  # rallypoint only: seconds between stack samples, 0 for none
    notices_reach_workers: bool = False  # their sender signals every process (proctrack/linuxproc)

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
            self.hang_timeout is None or self.hang_timeout > 0,
            f"--hang-timeout must be above 0, got {self.hang_timeout}",
        )
        _check(self.stack_period >= 0, f"--stack-period must be 0 or more, got {self.stack_period}")
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
        _check(self.node_rank >= 0, f"--node-rank must be 0 or more, got {self.node_rank}")
        _check(
            self.rdzv_backend != "static" or self.node_rank < self.max_nodes,
            f"--node-rank={self.node_rank} must be below --nnodes ({self.max_nodes}) "
            "with static rendezvous",
        )
        self._check_run_id()
        self._check_endpoints()
        self._check_signals()

    def _check_run_id(self) -> None:
        """The run id starts the name of the run's log folder: it must make a file name."""
        _check(
            "/" not in self.run_id and len(self.run_id.encode(errors="replace")) <= MAX_RUN_ID,
            f"--rdzv-id={self.run_id!r}: a run id must not contain '/' "
            f"and must stay under {MAX_RUN_ID} bytes (it names the run's log folder)",
        )

    def _check_endpoints(self) -> None:
        if self.master_port is not None:
            check_port(self.master_port, f"--master-port={self.master_port}")
        if self.rdzv_backend not in ETCD_BACKENDS:  # etcd's list: rallypoint.store.etcd.config
            parse_endpoint(self.rdzv_endpoint, C10D_PORT)

    def _check_signals(self) -> None:
        both = set(self.handled_signals) & set(self.notice_signals)
        _check(
            not both,
            f"--forward-signals={self.forward_signals}: "
            f"{','.join(sorted(s.name for s in both))} is also in --signals-to-handle, "
            "which stops the job on it; a signal is either a notice or a stop",
        )

    @property
    def handled_signals(self) -> tuple[signal.Signals, ...]:
        """The signals to trap and forward (checked when the config was made)."""
        return parse_signal_names(self.signals_to_handle)

    @property
    def notice_signals(self) -> tuple[signal.Signals, ...]:
        """The signals passed on to the workers as notices, the job going on."""
        return parse_signal_names(self.forward_signals, "--forward-signals")


def parse_signal_names(names: str, flag: str = "--signals-to-handle") -> tuple[signal.Signals, ...]:
    """``"SIGTERM,SIGINT"`` -> the signals; empty items are skipped.

    Raises:
        ConfigError: a name that is not a signal, or one that cannot be caught
            (torchrun logs a warning with a traceback for each and goes on).
    """
    what = f"{flag}={names}"
    return tuple(_signal_named(item.strip(), what) for item in names.split(",") if item.strip())


def _signal_named(name: str, what: str) -> signal.Signals:
    sig = signal.Signals.__members__.get(name)
    if sig is None:
        raise ConfigError(
            f"{what}: {name!r} is not a signal name; use names such as {DEFAULT_SIGNALS_TEXT}"
        )
    if sig in UNCATCHABLE:
        raise ConfigError(
            f"{what}: {name} cannot be caught, so no launcher can handle it; "
            f"list only catchable signals, such as {DEFAULT_SIGNALS_TEXT}"
        )
    return sig


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
