"""From parsed flags to a :class:`LaunchConfig`, with torchrun's rules.

Backend auto-selection (contract §1.4), ``--nproc-per-node`` resolution (§1.3),
the worker's command (§1.6) and the launcher environment the workers inherit
(OMP_NUM_THREADS, TORCHELASTIC_SIGNALS_TO_HANDLE) are decided here, once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from rallypoint.cli.parser import RawArgs
from rallypoint.cli.slurm import derive, step_of
from rallypoint.cli.values import (
    parse_filters,
    parse_nnodes,
    parse_ranks_filter,
    parse_rdzv_conf,
    parse_std_spec,
)
from rallypoint.config import ETCD_BACKENDS, Entrypoint, EntrypointKind, LaunchConfig
from rallypoint.devices import DeviceCounter
from rallypoint.endpoints import MASTER_PORT, parse_endpoint
from rallypoint.errors import ConfigError
from rallypoint.ids import uuid4_text

DEFAULT_LOGS_SPECS = "default"  # the name torch gives its DefaultLogsSpecs entry point
LOGS_SPECS_GROUP = "torchrun.logs_specs"
SECRET_ENV = "RALLYPOINT_SECRET"  # noqa: S105 - the variable name, not a secret


@dataclass(frozen=True, slots=True)
class Launch:
    """One launch as the command line asked for it."""

    config: LaunchConfig
    entrypoint: Entrypoint
    worker_base_env: Mapping[str, str]
    omp_threads_defaulted: bool
    dry_run: bool = False
    derived: tuple[str, ...] = ()  # flags filled in from the Slurm step, as typed


def resolve_nproc(text: str, devices: DeviceCounter) -> int:
    """``--nproc-per-node`` -> a count: an integer, ``cpu``, ``gpu`` or ``auto``."""
    if text.lstrip("-").isdigit():
        with contextlib.suppress(ValueError):  # digits int() does not read, e.g. "²"
            return int(text)
    if text == "cpu":
        return devices.cpus()
    if text == "gpu":
        gpus = devices.gpus()
        if gpus == 0:
            raise ConfigError(
                "--nproc-per-node=gpu: no GPU is visible on this machine "
                "(use an integer, cpu or auto)"
            )
        return gpus
    if text == "auto":
        return devices.gpus() or devices.cpus()
    raise ConfigError(f"--nproc-per-node={text}: expected an integer, cpu, gpu or auto")


def _rendezvous(raw: RawArgs, max_nodes: int, new_id: Callable[[], str]) -> tuple[str, str, str]:
    if raw.standalone:
        return "c10d", "localhost:0", new_id()
    auto_single = (
        raw.rdzv_backend == "static"
        and not raw.rdzv_endpoint
        and raw.master_port is None
        and max_nodes == 1
    )
    if auto_single:
        return "c10d", "localhost:0", new_id()
    return raw.rdzv_backend, raw.rdzv_endpoint, raw.rdzv_id


def _static_master(raw: RawArgs, backend: str, endpoint: str) -> tuple[str, int]:
    """MASTER_ADDR/PORT of static rendezvous: the endpoint if given, else the master flags."""
    port = MASTER_PORT if raw.master_port is None else raw.master_port
    if backend != "static" or not endpoint:
        return raw.master_addr, port
    master = parse_endpoint(endpoint, None)
    return master.host, master.port


def _check_etcd(backend: str, endpoint: str, conf: Mapping[str, str]) -> None:
    """An etcd job's endpoints and settings, checked before anything starts."""
    if backend in ETCD_BACKENDS:
        from rallypoint.store.etcd.config import settings_of

        settings_of(endpoint, conf)


def _check_logs_specs(name: str | None) -> None:
    """Only torch's ``default`` layout exists here: a LogsSpecs plugin is a torch class."""
    if name is None or name == DEFAULT_LOGS_SPECS:
        return
    from importlib import metadata

    found = metadata.entry_points(group=LOGS_SPECS_GROUP, name=name)
    if found:
        raise ConfigError(
            f"--logs-specs={name}: {LOGS_SPECS_GROUP}[{name}] is a torch LogsSpecs class "
            f"({next(iter(found)).value}), which rallypoint never loads; only "
            f"--logs-specs={DEFAULT_LOGS_SPECS} (the built-in layout) works"
        )
    raise ConfigError(
        f"--logs-specs={name}: no entry point {LOGS_SPECS_GROUP}[{name}] is installed; "
        f"rallypoint has only --logs-specs={DEFAULT_LOGS_SPECS} (the built-in layout)"
    )


def _entrypoint(raw: RawArgs) -> Entrypoint:
    if raw.run_path:
        kind = EntrypointKind.RUN_PATH
    elif raw.module and raw.no_python:
        raise ConfigError("-m/--module and --no-python cannot be combined: a module needs python")
    elif raw.module:
        kind = EntrypointKind.MODULE
    elif raw.no_python:
        kind = EntrypointKind.BINARY
    else:
        kind = EntrypointKind.SCRIPT
    _check_target(kind, raw.training_script)
    return Entrypoint(kind=kind, target=raw.training_script, args=raw.training_script_args)


def _check_target(kind: EntrypointKind, target: str) -> None:
    if kind in (EntrypointKind.SCRIPT, EntrypointKind.RUN_PATH) and not os.path.isfile(target):
        raise ConfigError(f"training script {target!r} does not exist (or is not a file)")
    if kind is EntrypointKind.BINARY and shutil.which(target) is None:
        raise ConfigError(f"--no-python: {target!r} is not an executable file or on PATH")


def _shutdown_timeout(raw: RawArgs, environ: Mapping[str, str]) -> int:
    if raw.shutdown_timeout is not None:
        return raw.shutdown_timeout
    text = environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "30")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"TORCH_ELASTIC_SHUTDOWN_TIMEOUT={text!r} must be an integer") from None


WORKER_HOSTED_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"  # torchrun's own switch


def _config(
    raw: RawArgs, environ: Mapping[str, str], devices: DeviceCounter, new_id: Callable[[], str]
) -> LaunchConfig:
    min_nodes, max_nodes = parse_nnodes(raw.nnodes)
    backend, endpoint, run_id = _rendezvous(raw, max_nodes, new_id)
    conf = parse_rdzv_conf(raw.rdzv_conf)
    if backend == "static":
        conf["rank"] = str(raw.node_rank)
    conf.setdefault("timeout", "900")
    master_addr, master_port = _static_master(raw, backend, endpoint)
    _check_etcd(backend, endpoint, conf)
    _check_logs_specs(raw.logs_specs)
    return LaunchConfig(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        nproc_per_node=resolve_nproc(raw.nproc_per_node, devices),
        run_id=run_id,
        role=raw.role,
        rdzv_endpoint=endpoint,
        rdzv_backend=backend,
        rdzv_configs=conf,
        max_restarts=raw.max_restarts,
        monitor_interval=raw.monitor_interval,
        start_method=raw.start_method,
        log_line_prefix_template=environ.get("TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"),
        local_addr=raw.local_addr,
        event_log_handler=raw.event_log_handler,
        signals_to_handle=raw.signals_to_handle,
        virtual_local_rank=raw.virtual_local_rank,
        shutdown_timeout=_shutdown_timeout(raw, environ),
        log_dir=raw.log_dir,
        redirects=parse_std_spec("--redirects", raw.redirects),
        tee=parse_std_spec("--tee", raw.tee),
        local_ranks_filter=parse_ranks_filter(raw.local_ranks_filter),
        duplicate_stdout_filters=parse_filters(raw.duplicate_stdout_filters),
        duplicate_stderr_filters=parse_filters(raw.duplicate_stderr_filters),
        node_rank=raw.node_rank,
        master_addr=master_addr,
        master_port=master_port,
        numa_binding=raw.numa_binding,
        rdzv_secret=_secret(conf, environ),
        forward_signals=raw.forward_signals or "",
        agent_store=environ.get(WORKER_HOSTED_STORE_ENV, "0") != "1",
        hang_timeout=raw.hang_timeout,
        stack_period=raw.stack_period,
    )


def _secret(conf: Mapping[str, str], environ: Mapping[str, str]) -> bytes | None:
    """The job's store secret: ``--rdzv-conf secret_file=PATH``, else ``$RALLYPOINT_SECRET``."""
    if "secret_file" not in conf and not environ.get(SECRET_ENV):
        return None
    from rallypoint.store import StoreSecretError, secret_from_env, secret_from_file

    try:
        if "secret_file" in conf:
            return secret_from_file(conf["secret_file"])
        if environ.get(SECRET_ENV):
            return secret_from_env(SECRET_ENV, environ)
    except StoreSecretError as exc:
        raise ConfigError(f"rendezvous secret: {exc}") from exc
    return None


def warm_modules(text: str, config: LaunchConfig, entrypoint: Entrypoint) -> tuple[str, ...]:
    """``--warm``: what the standbys import; () for none (off, --no-python, or nothing to do).

    ``auto`` means torch, when it can be found (without importing it) and a
    restart can happen.
    """
    text = text.strip()
    if entrypoint.kind is EntrypointKind.BINARY or text == "off":
        return ()
    if text != "auto":
        return _module_list(text)
    can_restart = config.max_restarts > 0 or config.min_nodes < config.max_nodes
    return ("torch",) if can_restart and importlib.util.find_spec("torch") else ()


def _module_list(text: str) -> tuple[str, ...]:
    modules = tuple(name.strip() for name in text.split(","))
    for name in modules:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(
                f"--warm={text}: {name!r} is not a module name "
                "(expected off, auto or a comma-separated list of modules)"
            )
    return modules


def _check_virtual_devices(config: LaunchConfig, environ: Mapping[str, str]) -> None:
    """``--virtual-local-rank`` gives each worker one entry of CUDA_VISIBLE_DEVICES."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if config.virtual_local_rank and visible is not None:
        count = len(visible.split(","))
        if count < config.nproc_per_node:
            raise ConfigError(
                f"--virtual-local-rank: CUDA_VISIBLE_DEVICES={visible} has {count} entries "
                f"for {config.nproc_per_node} workers; list one device per worker"
            )


def _check_log_dir(path: str | None) -> None:
    if path and path != os.devnull and os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--log-dir={path}: exists and is not a folder")


def build_launch(
    raw: RawArgs,
    environ: Mapping[str, str],
    devices: DeviceCounter,
    new_id: Callable[[], str] = uuid4_text,
) -> Launch:
    """Turn parsed flags into a validated launch.

    Raises:
        ConfigError: naming the flag, the value and what would be right.
    """
    slurm = derive(raw, step_of(environ))
    raw = slurm.raw
    config = _config(raw, environ, devices, new_id)
    if slurm.notices_reach_workers:
        config = replace(config, notices_reach_workers=True)
    entrypoint = _entrypoint(raw)
    config = replace(config, warm_modules=warm_modules(raw.warm, config, entrypoint))
    _check_log_dir(config.log_dir)
    _check_virtual_devices(config, environ)
    base = dict(environ)
    omp_defaulted = "OMP_NUM_THREADS" not in base and config.nproc_per_node > 1
    if omp_defaulted:
        base["OMP_NUM_THREADS"] = "1"
    base["TORCHELASTIC_SIGNALS_TO_HANDLE"] = config.signals_to_handle
    return Launch(config, entrypoint, base, omp_defaulted, raw.dry_run, slurm.flags)
