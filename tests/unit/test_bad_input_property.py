"""Random values at every flag and PET_* variable: one line and exit 2, or a valid launch.

The real entry function (:func:`rallypoint.cli.main.main`) runs in this
process with ``--dry-run``, which goes through every check a launch makes
before it starts anything (parsing, the config, etcd settings, rendezvous
timeouts, each rank's command and environment) and then prints the plan. Any
exception escaping ``main`` fails the test with its traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rallypoint.cli.flags import FLAGS, Flag, FlagKind
from rallypoint.cli.main import configure, main
from rallypoint.config import ETCD_BACKENDS, LaunchConfig
from rallypoint.rendezvous import factory
from rallypoint.signals import UNCATCHABLE
from rallypoint.store.etcd.config import parse_endpoints
from tests.conftest import WORKERS

SCRIPT = str(WORKERS / "exit_code.py")
HARNESS = {"dry_run"}  # the flag this test runs every launch with
FUZZED = [f for f in FLAGS if f.dest not in HARNESS]
ENV_FLAGS = [f for f in FLAGS if f.env_name is not None]
OTHER_VARIABLES = [  # the launcher's other inputs from the environment
    "TORCH_ELASTIC_SHUTDOWN_TIMEOUT",
    "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE",
    "RALLYPOINT_SECRET",
    "OMP_NUM_THREADS",
]
NAMED = (
    {name for f in FLAGS for name in f.names}
    | {str(f.env_name) for f in ENV_FLAGS}
    | {*OTHER_VARIABLES, "rendezvous secret"}
)

EDGES = [
    "", " ", "0", "1", "-1", "2", "65535", "65536", "99999", "-0", "1" * 5000, "9" * 30,
    "nan", "inf", "-inf", "1e309", "0x10", "1_000", "²", "١٢", "\n", "a\nb", "\u2028", "é",
    "\udc80", "x" * 300, "/", "a/b", "..", "-", "--", "-h", "--help", ":", "::", "[", "]",
    "[::1]", "[::1]:1", "[::1", "host:", ":0", "host:abc", "host:99999", "h:1,h:2", "http://h",
    ",", ",,", "=", "a=b", "k=", "=v", "a=b,c", "1:2", "2:1", "1:2:3", "0:1,1:2", "0:1,0:2",
    "SIGKILL", "SIGTERM,SIGKILL", "SIGTERM,NOSUCH", "SIGUSR1", "sigterm", "default", "NOSUCH",
    "static", "c10d", "etcd", "etcd-v2", "cpu", "gpu", "auto", "spawn", "fork", "node", "null",
    "console", "join_timeout=x", "join_timeout=-1", "is_host=maybe", "protocol=ftp",
    "cacert=/x,protocol=http", "session_ttl=0", "lease_ttl=nan", "timeout=x",
]  # fmt: skip
NO_NUL = st.characters(exclude_characters="\x00")
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.text(NO_NUL, max_size=30),
    st.integers().map(str),
    st.floats().map(repr),
    st.lists(st.sampled_from(EDGES), min_size=2, max_size=4).map(",".join),
)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    config: LaunchConfig | None = None


def long_name(flag: Flag) -> str:
    return next(n for n in flag.names if n.startswith("--"))


@st.composite
def argument(draw: st.DrawFn, flag: Flag) -> list[str]:
    if flag.kind is FlagKind.SWITCH:
        bad = draw(st.booleans()) and draw(st.integers(0, 9)) == 0
        return [f"{long_name(flag)}={draw(VALUES)}" if bad else long_name(flag)]
    choices = st.sampled_from(flag.choices) if flag.choices else st.nothing()
    return [f"{long_name(flag)}={draw(st.one_of(choices, VALUES))}"]


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], dict[str, str]]:
    flags = draw(st.lists(st.sampled_from(FUZZED), max_size=4, unique_by=lambda f: f.dest))
    argv = [word for flag in flags for word in draw(argument(flag))]
    pets = draw(st.lists(st.sampled_from(ENV_FLAGS), max_size=3, unique_by=lambda f: f.dest))
    env = {str(flag.env_name): draw(VALUES) for flag in pets}
    others = draw(st.lists(st.sampled_from(OTHER_VARIABLES), max_size=2, unique=True))
    env |= {name: draw(VALUES) for name in others}
    env = {k: v for k, v in env.items() if "\x00" not in v}
    return argv, env


def run(argv: list[str], env: dict[str, str]) -> Outcome:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CUDA_VISIBLE_DEVICES": "", **env}
    argv = [*argv, "--dry-run", SCRIPT, "--x", "$local_rank"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv, environ, [])
    config = configure(argv, environ).config if code == 0 else None
    return Outcome(code, out.getvalue(), err.getvalue(), config)


def check_usable(config: LaunchConfig) -> None:
    """What the agent does with a config after the dry run's point, done here at no cost."""
    assert not set(config.handled_signals) & UNCATCHABLE  # signal.signal() would raise
    assert 0 <= (config.master_port or 0) <= 65535  # bind() would raise OverflowError
    if config.rdzv_backend in ETCD_BACKENDS:
        ports = [port for _, port in parse_endpoints(config.rdzv_endpoint)[0]]
    else:
        ports = [factory._endpoint(config)[1]]  # the store's address, as the agent reads it
    assert all(0 <= port <= 65535 for port in ports)
    assert "/" not in config.run_id  # it starts the name of the run's log folder


def check(outcome: Outcome) -> None:
    if outcome.code == 2:
        lines = outcome.stderr.splitlines()
        assert len(lines) == 1, outcome.stderr
        assert lines[0].startswith("rallypoint: error: "), lines[0]
        assert any(name in lines[0] for name in NAMED), f"names no flag or variable: {lines[0]}"
        assert outcome.stdout == ""
        return
    assert outcome.code == 0, outcome
    assert outcome.stderr == "", outcome.stderr
    assert outcome.stdout.startswith("rallypoint: dry run, nothing was started\n")
    assert "local rank 0: " in outcome.stdout
    assert outcome.config is not None
    check_usable(outcome.config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
@example((["--rdzv-backend=c10d", "--nnodes=2", "--rdzv-endpoint=host:abc"], {}))
@example((["--master-addr=h", "--master-port=99999"], {}))
@example((["--signals-to-handle=SIGTERM,SIGKILL"], {}))
@example((["--logs-specs=NOSUCH"], {}))
@example((["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-conf=join_timeout=x"], {}))
@example(([], {"PET_RDZV_ENDPOINT": "host:99999", "PET_NNODES": "2", "PET_RDZV_BACKEND": "etcd"}))
@example(([], {"PET_START_METHOD": "thread"}))
@example((["--nnodes=--"], {}))
def test_every_flag_and_variable_gives_one_line_or_a_valid_launch(
    case: tuple[list[str], dict[str, str]],
) -> None:
    check(run(*case))


def test_the_harness_sees_both_outcomes() -> None:
    """Guards the guard: a good command line passes, a bad one is one line and exit 2."""
    good = run(["--nproc-per-node=2"], {})
    check(good)
    assert good.code == 0
    assert "  OMP_NUM_THREADS=1\n" in good.stdout
    assert "local rank 1: " in good.stdout
    bad = run(["--master-port=99999"], {})
    check(bad)
    assert bad.code == 2
