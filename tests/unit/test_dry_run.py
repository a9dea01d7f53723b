"""--dry-run: the plan a launch would follow, from the functions the agent itself calls."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rallypoint.cli import output
from rallypoint.cli.dryrun import FREE_PORT, FROM_RENDEZVOUS, MAX_SHOWN, DryRun, plan
from rallypoint.cli.parser import parse_args
from rallypoint.cli.settings import build_launch
from tests.unit.test_settings import FakeDevices


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "train.py"
    path.write_text("")
    return str(path)


def dry(args: list[str], env: dict[str, str] | None = None) -> DryRun:
    env = env or {}
    launch = build_launch(parse_args(["--dry-run", *args], env), env, FakeDevices(), lambda: "u1")
    assert launch.dry_run
    return plan(launch, "node7", env)


def test_single_node_knows_every_rank(script: str) -> None:
    found = dry(["--nproc-per-node=2", script, "--rank", "$local_rank"])
    one = dict(found.ranks[1].env)
    assert found.ranks[1].argv[-3:] == (script, "--rank", "1")
    assert (one["RANK"], one["WORLD_SIZE"], one["LOCAL_WORLD_SIZE"]) == ("1", "2", "2")
    assert (one["MASTER_ADDR"], one["MASTER_PORT"]) == ("node7", FREE_PORT)
    assert one["OMP_NUM_THREADS"] == "1"  # set by the launcher, so shown
    assert one["TORCHELASTIC_RUN_ID"] == "u1"
    assert found.hidden_ranks == 0


def test_static_single_node_shows_the_master_port(script: str) -> None:
    env = dict(dry(["--master-addr=10.1.1.1", "--master-port=4000", script]).ranks[0].env)
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.1.1.1", "4000")


def test_only_what_differs_from_the_launchers_environment_is_shown(script: str) -> None:
    env = dict(dry([script], {"OMP_NUM_THREADS": "4", "HOME": "/h"}).ranks[0].env)
    assert "OMP_NUM_THREADS" not in env
    assert "HOME" not in env


def test_several_nodes_leave_ranks_to_the_rendezvous(script: str) -> None:
    found = dry(["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-conf=join_timeout=5", script])
    env = dict(found.ranks[0].env)
    assert env["RANK"] == env["WORLD_SIZE"] == env["MASTER_PORT"] == FROM_RENDEZVOUS
    assert env["LOCAL_RANK"] == "0"
    timeouts = dict(found.settings)["rendezvous timeouts"]
    assert timeouts.join == 5.0  # type: ignore[attr-defined]


def test_many_ranks_show_the_first_few(script: str) -> None:
    found = dry(["--nproc-per-node=100", script])
    assert (len(found.ranks), found.hidden_ranks) == (MAX_SHOWN, 100 - MAX_SHOWN)
    text = io.StringIO()
    output.dry_run(found, text)
    assert f"(local ranks {MAX_SHOWN} to 99 follow the same pattern)" in text.getvalue()


def test_the_secret_is_never_printed(script: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"hunter2")
    secret.chmod(0o600)
    found = dry([f"--rdzv-conf=secret_file={secret}", script])
    text = io.StringIO()
    output.dry_run(found, text)
    assert "hunter2" not in text.getvalue()
    assert dict(found.settings)["rdzv_secret"] == "(set)"


def test_printed_plan_is_one_line_per_item(script: str) -> None:
    text = io.StringIO()
    output.dry_run(dry(["--role=a\nb", script]), text)
    assert "  role                      a\\nb\n" in text.getvalue()
    assert text.getvalue().startswith("rallypoint: dry run, nothing was started\nconfiguration:\n")
