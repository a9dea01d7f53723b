"""Zero-flag Slurm: a launcher started as a Slurm step task finds its job by itself.

Design note: users write the same glue under Slurm every time
(``MASTER_ADDR=$(scontrol show hostnames ...)``, ``--nnodes=$SLURM_NNODES``,
``--rdzv-id=$SLURM_JOB_ID``). When the launcher runs as a step task and the
rendezvous flags were left out, this module fills them in from the step's own
variables, in pure code (no ``scontrol``, no I/O):

- ``--nnodes`` is the step's node count;
- ``--rdzv-backend=c10d`` with ``--rdzv-endpoint`` on the first host of the
  step's node list (node 0 hosts the store, ``is_host`` says so), on the
  step's first reserved port (``SLURM_STEP_RESV_PORTS``) or else on a port
  worked out from the job and step ids, so two steps sharing a first host do
  not fight over one port;
- ``--rdzv-id=slurm-JOB.STEP``, so two steps of one allocation never meet;
- ``--forward-signals=SIGUSR1,SIGUSR2``: Slurm's preemption warnings reach the
  workers as notices. Under ``ProctrackType=proctrack/linuxproc`` (read from the
  node's slurm.conf, the one file this module reads) slurmstepd signals every
  process of the step itself, workers included, so the launcher only traps and
  records a notice instead of sending it a second time.

A flag given on the command line or by ``PET_*`` always wins. A static glue
(``--master-addr``, ``--master-port``, ``--node-rank``, ``--rdzv-backend=static``)
or ``--standalone`` turns the rendezvous derivation off. Several tasks on one
node, each a full launcher, is refused: each would start its own workers.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from rallypoint.cli.parser import RawArgs
from rallypoint.errors import ConfigError
from rallypoint.hostlist import expand_hostlist

SLURM_NOTICES = "SIGUSR1,SIGUSR2"
PORT_BASE = 29400  # torchrun's c10d port; the derived ports lie above it
PORT_SPAN = 1000
STATIC_FLAGS = frozenset({"master_addr", "master_port", "node_rank", "standalone"})
RENDEZVOUS_FLAGS = frozenset({"nnodes", "rdzv_backend", "rdzv_endpoint", "rdzv_id"})
DERIVING_BACKENDS = ("c10d", "etcd", "etcd-v2")
_TASKS = re.compile(r"^([0-9]+)(?:\(x([0-9]+)\))?$")
_PROCTRACK = re.compile(r"^\s*proctracktype\s*=\s*(\S+)", re.IGNORECASE | re.MULTILINE)
DEFAULT_CONF = "/etc/slurm/slurm.conf"
SIGNALS_EVERY_PROCESS = ("proctrack/linuxproc",)


@dataclass(frozen=True, slots=True)
class SlurmStep:
    """What a step task knows of its step, from Slurm's variables."""

    job_id: int
    step_id: int
    node_id: int
    nnodes: int
    first_host: str
    tasks_here: int
    reserved_port: int | None = None
    signals_every_process: bool = False  # slurmstepd signals the workers too (linuxproc)


@dataclass(frozen=True, slots=True)
class Derived:
    """The arguments after derivation, and the flags that were filled in (as typed)."""

    raw: RawArgs
    flags: tuple[str, ...] = ()
    notices_reach_workers: bool = False


def _number(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        text = environ.get(name, "")
        if text.isascii() and text.isdigit():
            return int(text)
    return None


def _tasks_per_node(text: str, node_id: int) -> int:
    """``2(x3),1`` (SLURM_STEP_TASKS_PER_NODE) -> the count of node ``node_id``."""
    counts: list[int] = []
    for item in text.split(","):
        found = _TASKS.match(item.strip())
        if found is None:
            return 1  # a form we do not know: do not refuse on a guess
        counts += [int(found[1])] * int(found[2] or 1)
    return counts[node_id] if node_id < len(counts) else 1


def _reserved_port(environ: Mapping[str, str]) -> int | None:
    """The first of ``SLURM_STEP_RESV_PORTS`` (``12000-12003`` or ``12000,12005``)."""
    first = re.match(r"^([0-9]{1,5})", environ.get("SLURM_STEP_RESV_PORTS", ""))
    return int(first[1]) if first and 0 < int(first[1]) < 65536 else None


def _read(path: str) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8") as conf:
        return conf.read()
    return ""


def signals_every_process(conf_text: str) -> bool:
    """Whether a slurm.conf's ProctrackType makes slurmstepd signal every process of a step."""
    found = _PROCTRACK.findall(conf_text)
    return bool(found) and found[-1].lower() in SIGNALS_EVERY_PROCESS


def step_of(environ: Mapping[str, str], read: Callable[[str], str] = _read) -> SlurmStep | None:
    """This task's Slurm step, or None when the launcher is not a step task.

    Raises:
        ConfigError: the step's node list is not a hostlist.
    """
    numbers = [
        _number(environ, "SLURM_JOB_ID", "SLURM_JOBID"),
        _number(environ, "SLURM_STEP_ID", "SLURM_STEPID"),
        _number(environ, "SLURM_NODEID"),
        _number(environ, "SLURM_STEP_NUM_NODES", "SLURM_NNODES"),
    ]
    name = "SLURM_STEP_NODELIST" if "SLURM_STEP_NODELIST" in environ else "SLURM_JOB_NODELIST"
    known = [n for n in numbers if n is not None]
    if len(known) < len(numbers) or not environ.get(name):
        return None
    job, step, node, nnodes = known
    hosts = expand_hostlist(environ[name], name)
    tasks = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE", "1")
    every = signals_every_process(read(environ.get("SLURM_CONF", DEFAULT_CONF)))
    tasks_here = _tasks_per_node(tasks, node)
    return SlurmStep(job, step, node, nnodes, hosts[0], tasks_here, _reserved_port(environ), every)


def derived_port(step: SlurmStep) -> int:
    """The store's port: the step's reserved one, else one from the job and step ids."""
    if step.reserved_port is not None:
        return step.reserved_port
    return PORT_BASE + 1 + (step.job_id * 7 + step.step_id) % PORT_SPAN


def _rendezvous(raw: RawArgs, step: SlurmStep) -> dict[str, object]:
    """The rendezvous flags to fill in (dest -> value), none if the user chose static."""
    backend = raw.rdzv_backend if "rdzv_backend" in raw.given else "c10d"
    if raw.given & STATIC_FLAGS or backend not in DERIVING_BACKENDS:
        return {}
    values: dict[str, object] = {
        "nnodes": str(step.nnodes),
        "rdzv_backend": backend,
        "rdzv_id": f"slurm-{step.job_id}.{step.step_id}",
    }
    if backend == "c10d":
        values["rdzv_endpoint"] = f"{step.first_host}:{derived_port(step)}"
    return {k: v for k, v in values.items() if k not in raw.given}


def _notices(raw: RawArgs) -> str:
    """Slurm's warning signals, less any the user asked to stop the job on."""
    stops = {name.strip() for name in raw.signals_to_handle.split(",")}
    return ",".join(name for name in SLURM_NOTICES.split(",") if name not in stops)


def _check_one_launcher(step: SlurmStep, fills: Mapping[str, object]) -> None:
    if step.tasks_here > 1 and fills:
        raise ConfigError(
            f"Slurm runs {step.tasks_here} tasks of step {step.job_id}.{step.step_id} on this "
            "node, each a full launcher starting its own workers; run one task per node "
            "(srun --ntasks-per-node=1) and give the worker count with --nproc-per-node"
        )


def derive(raw: RawArgs, step: SlurmStep | None) -> Derived:
    """``raw`` with what the Slurm step tells filled in where the user said nothing.

    Raises:
        ConfigError: several launchers per node, with flags left to derive.
    """
    if step is None:
        return Derived(raw)
    fills = _rendezvous(raw, step)
    _check_one_launcher(step, fills)
    if "forward_signals" not in raw.given:
        fills["forward_signals"] = _notices(raw)
    conf = raw.rdzv_conf
    if "rdzv_endpoint" in fills and "is_host=" not in conf:
        host = "is_host=" + ("true" if step.node_id == 0 else "false")
        conf = f"{conf},{host}" if conf else host
    shown = tuple(f"--{k.replace('_', '-')}={v}" for k, v in fills.items())
    changed = replace(raw, rdzv_conf=conf, **fills)  # type: ignore[arg-type]
    return Derived(changed, shown, step.signals_every_process)
