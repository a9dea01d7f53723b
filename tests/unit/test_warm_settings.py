"""``--warm``/``PET_WARM``: which modules standbys import, and when there are none."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rallypoint.agent.worker_env import ROUND_KEYS, WorkerPlace, standby_env, worker_env
from rallypoint.cli.parser import parse_args
from rallypoint.cli.settings import build_launch
from rallypoint.config import LaunchConfig
from rallypoint.errors import ConfigError
from rallypoint.rendezvous.result import RendezvousResult
from tests.unit.test_settings import FakeDevices

TORCH = ("torch",) if importlib.util.find_spec("torch") else ()


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "train.py"
    path.write_text("")
    return str(path)


def warm(args: list[str], env: dict[str, str] | None = None) -> tuple[str, ...]:
    env = env or {}
    return build_launch(parse_args(args, env), env, FakeDevices()).config.warm_modules


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ()),  # no restart can happen: nothing to warm
        (["--max-restarts=1"], TORCH),
        (["--nnodes=1:2", "--rdzv-endpoint=h:1", "--rdzv-backend=c10d"], TORCH),
        (["--max-restarts=1", "--warm=off"], ()),
        (["--max-restarts=1", "--no-python"], ()),  # never for programs
        (["--max-restarts=1", "--warm=json, xml.dom"], ("json", "xml.dom")),
        (["--warm=json"], ("json",)),  # asked for: even without restarts (a slow rendezvous)
    ],
)
def test_warm_modules(script: str, args: list[str], expected: tuple[str, ...]) -> None:
    target = "true" if "--no-python" in args else script
    assert warm([*args, target]) == expected


def test_pet_warm_and_the_flag_wins(script: str) -> None:
    assert warm(["--max-restarts=1", script], {"PET_WARM": "off"}) == ()
    assert warm(["--warm=json", script], {"PET_WARM": "off"}) == ("json",)


@pytest.mark.parametrize("text", ["a b", "json,", "1abc", "a..b", "os/path"])
def test_bad_module_names_are_refused(script: str, text: str) -> None:
    with pytest.raises(ConfigError, match=r"--warm=.* is not a module name"):
        warm([f"--warm={text}", script])


def test_standby_env_is_the_worker_env_without_the_rounds_values() -> None:
    config = LaunchConfig(min_nodes=1, max_nodes=2, nproc_per_node=2, run_id="j", max_restarts=3)
    base = {"PATH": "/bin", "RANK": "launcher's", "OMP_NUM_THREADS": "4"}
    rdzv = RendezvousResult(2, 1, 2, 2, 4, 2, 4, "node0", 4242, restarts=1)
    full = worker_env(config, rdzv, WorkerPlace(1, 1, "/l/attempt_1/1/error.json"), base)
    standby = standby_env(config, 1, base)
    assert standby == {k: v for k, v in full.items() if k not in ROUND_KEYS}
    assert {"LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID"} <= standby.keys()
    assert not ROUND_KEYS & standby.keys()
