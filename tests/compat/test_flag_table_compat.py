"""rallypoint's parser accepts every torchrun option, with the same dests and defaults.

torchrun's parser (``torch.distributed.run.get_args_parser``) is imported here,
in the test process; the launcher itself never imports torch.

Documented value mapping: torchrun's ``--duplicate-stdout-filters`` and
``--duplicate-stderr-filters`` convert with ``type=comma_separated_list`` and
default to ``[]``; rallypoint's parser keeps the raw string (default None) and
splits it later with :func:`rallypoint.cli.values.parse_filters`. Compared
through :data:`RALLYPOINT_TO_TORCHRUN`. Every other value compares as is.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rallypoint.cli.parser import build_parser
from rallypoint.cli.values import parse_filters
from tests.compat._helpers import RALLYPOINT, TORCHRUN, base_env

pytestmark = [pytest.mark.integration, pytest.mark.torch]

torch_run = pytest.importorskip("torch.distributed.run")

RALLYPOINT_TO_TORCHRUN: dict[str, Callable[[object], object]] = {
    "duplicate_stdout_filters": lambda v: list(parse_filters(None if v is None else str(v))),
    "duplicate_stderr_filters": lambda v: list(parse_filters(None if v is None else str(v))),
}

# A valid PET_* value for each value flag, to compare the env fallback.
PET_SAMPLES = {
    "nnodes": "1:2",
    "nproc_per_node": "3",
    "rdzv_backend": "c10d",
    "rdzv_endpoint": "host:1234",
    "rdzv_id": "job7",
    "rdzv_conf": "a=1,b=2",
    "max_restarts": "4",
    "monitor_interval": "0.5",
    "start_method": "fork",
    "event_log_handler": "console",
    "role": "trainer",
    "log_dir": "/tmp/logs",
    "redirects": "3",
    "tee": "0:1,1:2",
    "local_ranks_filter": "0,1",
    "duplicate_stdout_filters": "a,,b,c",
    "duplicate_stderr_filters": "err",
    "node_rank": "1",
    "master_addr": "10.0.0.1",
    "master_port": "29501",
    "local_addr": "node1",
    "signals_to_handle": "SIGTERM",
    "shutdown_timeout": "7",
}


@pytest.fixture
def clean_pet(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """torchrun's parser reads os.environ when built: no stray PET_* variables."""
    for key in list(os.environ):
        if key.startswith("PET_") or key == "TORCH_ELASTIC_SHUTDOWN_TIMEOUT":
            monkeypatch.delenv(key)
    return monkeypatch


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: action for action in parser._actions for opt in action.option_strings}


def _positionals(parser: argparse.ArgumentParser) -> list[tuple[str, object]]:
    return [(a.dest, a.nargs) for a in parser._actions if not a.option_strings]


def _is_switch(action: argparse.Action) -> bool:
    return action.nargs == 0


def _as_torchrun(dest: str, value: object) -> object:
    return RALLYPOINT_TO_TORCHRUN.get(dest, lambda v: v)(value)


def test_every_torchrun_option_is_accepted_with_same_dest_and_default(clean_pet: object) -> None:
    torch_opts = _options(torch_run.get_args_parser())
    rally_opts = _options(build_parser({}))
    missing = sorted(set(torch_opts) - set(rally_opts))
    assert not missing, f"torchrun options rallypoint does not accept: {missing}"
    problems = []
    for opt, t_action in torch_opts.items():
        r_action = rally_opts[opt]
        if r_action.dest != t_action.dest:
            problems.append(f"{opt}: dest torchrun={t_action.dest} rallypoint={r_action.dest}")
        if sorted(r_action.option_strings) != sorted(t_action.option_strings):
            problems.append(
                f"{opt}: spellings torchrun={t_action.option_strings} "
                f"rallypoint={r_action.option_strings}"
            )
        if _is_switch(r_action) != _is_switch(t_action):
            problems.append(f"{opt}: switch-ness differs")
        if t_action.dest == "help":
            continue
        r_default = _as_torchrun(r_action.dest, r_action.default)
        if r_default != t_action.default or type(r_default) is not type(t_action.default):
            problems.append(
                f"{opt}: default torchrun={t_action.default!r} rallypoint={r_action.default!r}"
            )
        t_choices = list(t_action.choices) if t_action.choices else None
        r_choices = list(r_action.choices) if r_action.choices else None
        if t_choices != r_choices:
            problems.append(f"{opt}: choices torchrun={t_choices} rallypoint={r_choices}")
    assert not problems, "\n".join(problems)
    assert _positionals(build_parser({})) == _positionals(torch_run.get_args_parser())


@pytest.mark.parametrize("dest", sorted(PET_SAMPLES))
def test_pet_fallback_gives_same_value(dest: str, clean_pet: pytest.MonkeyPatch) -> None:
    value = PET_SAMPLES[dest]
    environ = {f"PET_{dest.upper()}": value}
    clean_pet.setenv(f"PET_{dest.upper()}", value)
    torch_ns = torch_run.get_args_parser().parse_args(["script.py"])
    rally_ns = build_parser(environ).parse_args(["script.py"])
    assert _as_torchrun(dest, getattr(rally_ns, dest)) == getattr(torch_ns, dest)


def test_pet_fallback_for_switches_and_not_for_logs_specs(clean_pet: pytest.MonkeyPatch) -> None:
    switches = ["standalone", "module", "no_python", "run_path", "virtual_local_rank"]
    environ = {f"PET_{d.upper()}": "1" for d in switches}
    environ |= {"PET_LOGS_SPECS": "x", "PET_NUMA_BINDING": "node"}
    for key, value in environ.items():
        clean_pet.setenv(key, value)
    torch_ns = vars(torch_run.get_args_parser().parse_args(["script.py"]))
    rally_ns = vars(build_parser(environ).parse_args(["script.py"]))
    for dest in [*switches, "logs_specs", "numa_binding"]:
        assert rally_ns[dest] == torch_ns[dest], dest


@pytest.mark.parametrize("value", ["a,,b,c", "a,b", "x", "a,,,b", "x,", ",x", ""])
def test_duplicate_filters_split_like_torchrun(value: str, clean_pet: object) -> None:
    """The documented mapping: parse_filters(raw) is what torchrun's type= gives."""
    argv = [f"--duplicate-stdout-filters={value}", "script.py"]
    torch_value = torch_run.get_args_parser().parse_args(argv).duplicate_stdout_filters
    rally_value = build_parser({}).parse_args(argv).duplicate_stdout_filters
    assert _as_torchrun("duplicate_stdout_filters", rally_value) == torch_value


def test_help_lists_every_torchrun_option(tmp_path: Path, clean_pet: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rallypoint", "--help"],
        env=base_env(tmp_path, "unused"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    unlisted = [
        opt
        for opt in _options(torch_run.get_args_parser())
        if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", done.stdout)
    ]
    assert not unlisted, f"rallypoint --help does not list: {unlisted}"


def test_trailing_comma_filter_duplicates_like_torchrun(tmp_path: Path, mark: str) -> None:
    """End to end: torchrun keeps the empty item of ``x,``, which matches every line."""
    script = tmp_path / "hello.py"
    script.write_text('print("hello from worker")\n')
    logs = {name: tmp_path / f"logs_{name}" for name in ("torchrun", "rallypoint")}
    outcomes = {}
    for name, launcher in (("torchrun", TORCHRUN), ("rallypoint", RALLYPOINT)):
        flags = ["--nproc-per-node=1", "--tee=3", f"--log-dir={logs[name]}"]
        outcomes[name] = subprocess.run(
            [*launcher, *flags, "--duplicate-stdout-filters=nomatch,", str(script)],
            env=base_env(tmp_path, mark),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert outcomes[name].returncode == 0, outcomes[name].stderr
    filtered = {
        name: "".join(p.read_text() for p in folder.glob("*/attempt_0/filtered_stdout.log"))
        for name, folder in logs.items()
    }
    assert "hello from worker" in filtered["torchrun"]
    assert filtered["rallypoint"] == filtered["torchrun"]
