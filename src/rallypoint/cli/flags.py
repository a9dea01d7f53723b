"""Every launcher flag, declared once.

Design note: torchrun declares each flag in an ``add_argument`` call, its
``PET_*`` fallback through a custom argparse action, and its help inline. Here a
single table of :class:`Flag` rows feeds all three: the parser
(:mod:`rallypoint.cli.parser`), the environment fallback and ``--help``. The
table order is torchrun's and every flag sits in the one ``options`` group, so
``--help`` lists them as torchrun does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from rallypoint.signals import DEFAULT_SIGNALS_TEXT


class FlagKind(enum.Enum):
    """How a flag's value is read."""

    VALUE = "value"  # takes one argument, converted by ``convert``
    SWITCH = "switch"  # present means True; PET_ value must be an integer


@dataclass(frozen=True, slots=True)
class Flag:
    """One launcher flag: its spellings, type, default, env fallback and help."""

    names: tuple[str, ...]
    dest: str
    help: str
    kind: FlagKind = FlagKind.VALUE
    default: object = None
    convert: Callable[[str], object] = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    pet: bool = True  # whether PET_<DEST> may supply the default

    @property
    def env_name(self) -> str | None:
        """Name of the ``PET_*`` variable that replaces the default, if any."""
        return f"PET_{self.dest.upper()}" if self.pet else None


def _spellings(dashed: str) -> tuple[str, ...]:
    """``--nproc-per-node`` -> (``--nproc-per-node``, ``--nproc_per_node``)."""
    underscored = "--" + dashed[2:].replace("-", "_")
    return (dashed,) if underscored == dashed else (dashed, underscored)


def _dest(dashed: str) -> str:
    return dashed[2:].replace("-", "_")


def _flag(dashed: str, help: str, **kw: object) -> Flag:
    return Flag(names=_spellings(dashed), dest=_dest(dashed), help=help, **kw)  # type: ignore[arg-type]


FLAGS: tuple[Flag, ...] = (
    Flag(
        ("--nnodes",),
        "nnodes",
        "Number of nodes, N or MIN:MAX for an elastic job.",
        default="1:1",
    ),
    _flag("--nproc-per-node", "Workers per node: an integer, cpu, gpu or auto.", default="1"),
    _flag(
        "--rdzv-backend",
        "Rendezvous backend: static, c10d, etcd or etcd-v2.",
        default="static",
    ),
    _flag(
        "--rdzv-endpoint",
        "Rendezvous endpoint: host[:port] or [ipv6]:port "
        "(etcd: a comma-separated list; default ports 29400 c10d, 2379 etcd).",
        default="",
    ),
    _flag("--rdzv-id", "Job id shared by every node of the job.", default="none"),
    _flag("--rdzv-conf", "Extra rendezvous settings, key1=value1,key2=value2.", default=""),
    _flag(
        "--standalone",
        "Single node with an embedded store on a free port; "
        "--rdzv-backend, --rdzv-endpoint and --rdzv-id are then chosen for you.",
        kind=FlagKind.SWITCH,
        default=False,
    ),
    _flag(
        "--max-restarts",
        "Restarts of the worker group allowed after a failure.",
        default=0,
        convert=int,
    ),
    _flag(
        "--monitor-interval",
        "Kept for compatibility: rallypoint learns of exits as events and never polls.",
        default=0.1,
        convert=float,
    ),
    _flag(
        "--start-method",
        "How function entrypoints start (scripts always spawn).",
        default="spawn",
        choices=("spawn", "fork", "forkserver"),
    ),
    _flag("--event-log-handler", "Where lifecycle events go: null or console.", default="null"),
    Flag(("--role",), "role", "Role name of this node's workers.", default="default"),
    Flag(
        ("-m", "--module"),
        "module",
        "Run the script as a module, like python -m.",
        kind=FlagKind.SWITCH,
        default=False,
    ),
    _flag(
        "--no-python",
        "Execute the script directly instead of with python.",
        kind=FlagKind.SWITCH,
        default=False,
    ),
    _flag(
        "--run-path",
        "Run the script with runpy.run_path in a spawned interpreter; "
        "wins over --no-python and -m.",
        kind=FlagKind.SWITCH,
        default=False,
    ),
    _flag("--log-dir", "Base folder of the per-run log folders."),
    Flag(
        ("-r", "--redirects"),
        "redirects",
        "Send worker streams to files: 0 none, 1 stdout, "
        "2 stderr, 3 both; or per rank, e.g. 0:1,1:2.",
        default="0",
    ),
    Flag(
        ("-t", "--tee"),
        "tee",
        "Like --redirects, and also print with a rank prefix.",
        default="0",
    ),
    _flag("--local-ranks-filter", "Local ranks shown on the console, e.g. 0,1.", default=""),
    _flag(
        "--duplicate-stdout-filters",
        "Copy tee'd stdout lines containing any of these "
        "comma-separated strings (,, for a comma) to filtered_stdout.log.",
    ),
    _flag(
        "--duplicate-stderr-filters",
        "The same for stderr, into filtered_stderr.log.",
    ),
    _flag("--node-rank", "This node's rank (static rendezvous only).", default=0, convert=int),
    _flag(
        "--master-addr",
        "Address of node rank 0 (static only), passed verbatim.",
        default="127.0.0.1",
    ),
    _flag(
        "--master-port",
        "Port on node rank 0 (static only), 0 to 65535; 29500 if unset.",
        convert=int,
    ),
    _flag("--local-addr", "This node's address as other nodes reach it."),
    _flag(
        "--logs-specs",
        "torchrun's LogsSpecs plugin name; only 'default' (the built-in log layout) "
        "is accepted, as a plugin is a torch class.",
        pet=False,
    ),
    _flag(
        "--numa-binding",
        "Bind workers to CPUs near their GPU (needs numactl).",
        choices=("node", "socket", "exclusive", "core-complex"),
        pet=False,
    ),
    _flag(
        "--signals-to-handle",
        "Signals forwarded to the workers' process groups.",
        default=DEFAULT_SIGNALS_TEXT,
    ),
    _flag(
        "--shutdown-timeout",
        "Seconds between the stop signal and SIGKILL; default "
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT or 30.",
        convert=int,
    ),
    _flag(
        "--virtual-local-rank",
        "Give every worker LOCAL_RANK=0 and its own GPU as device 0.",
        kind=FlagKind.SWITCH,
        default=False,
    ),
    _flag(
        "--warm",
        "rallypoint only: standby interpreters that import these modules ahead of a restart "
        "(comma-separated; none may initialise CUDA), off, or auto: torch when it is "
        "installed and a restart can happen (--max-restarts above 0, or MIN < MAX).",
        default="auto",
        metavar="MODULES",
    ),
    _flag(
        "--dry-run",
        "rallypoint only: print the resolved configuration and each local rank's command "
        "and environment, then exit without starting anything.",
        kind=FlagKind.SWITCH,
        default=False,
    ),
    _flag(
        "--hang-timeout",
        "rallypoint only: seconds a rank's Python stack may stay unchanged before the job "
        "counts as hung: the workers are stopped, the summary names the culprit, and the "
        "group restarts within --max-restarts. Unset: a hang is only reported, after 300 s "
        "(see docs/hangs.md for how to size it).",
        convert=float,
    ),
    _flag(
        "--stack-period",
        "rallypoint only: seconds between two samples of every worker's Python stacks "
        "(0: none; crash stacks are kept either way); default 3.",
        convert=float,
        default=3.0,
    ),
    _flag(
        "--forward-signals",
        "rallypoint only: signals passed on to every worker's process group as a notice, "
        "the job going on (e.g. SIGUSR1 for a preemption warning); default SIGUSR1,SIGUSR2 "
        "under Slurm, none elsewhere.",
    ),
)
