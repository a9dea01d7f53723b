"""The worker environment builder (contract §2.1)."""

from __future__ import annotations

from typing import Any

import pytest

from rallypoint.agent.worker_env import WorkerPlace, worker_env
from rallypoint.config import LaunchConfig
from rallypoint.rendezvous.result import RendezvousResult

RDZV = RendezvousResult(
    round=0,
    group_rank=1,
    group_world_size=3,
    base_rank=4,
    world_size=9,
    base_role_rank=2,
    role_world_size=6,
    master_addr="node0",
    master_port=4242,
)


def env_of(local_rank: int, base: dict[str, str] | None = None, **config: Any) -> dict[str, str]:
    cfg = LaunchConfig(
        min_nodes=1,
        max_nodes=3,
        nproc_per_node=3,
        run_id="job",
        role="trainer",
        max_restarts=2,
        **config,
    )
    place = WorkerPlace(local_rank, 1, f"/logs/attempt_1/{local_rank}/error.json")
    return worker_env(cfg, RDZV, place, base or {"PATH": "/bin"})


def test_every_variable_of_the_contract() -> None:
    env = env_of(2)
    assert env == {
        "PATH": "/bin",
        "LOCAL_RANK": "2",
        "RANK": "6",
        "GROUP_RANK": "1",
        "ROLE_RANK": "4",
        "ROLE_NAME": "trainer",
        "LOCAL_WORLD_SIZE": "3",
        "WORLD_SIZE": "9",
        "GROUP_WORLD_SIZE": "3",
        "ROLE_WORLD_SIZE": "6",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "4242",
        "TORCHELASTIC_RESTART_COUNT": "1",
        "TORCHELASTIC_MAX_RESTARTS": "2",
        "TORCHELASTIC_RUN_ID": "job",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        "TORCHELASTIC_ERROR_FILE": "/logs/attempt_1/2/error.json",
    }


def test_launcher_values_are_inherited_and_ours_win() -> None:
    base = {"MASTER_ADDR": "user", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0", "X": "y"}
    env = env_of(0, base)
    assert (env["MASTER_ADDR"], env["TORCH_NCCL_ASYNC_ERROR_HANDLING"], env["X"]) == (
        "node0",
        "0",
        "y",
    )


def test_virtual_local_rank() -> None:
    env = env_of(1, {"CUDA_VISIBLE_DEVICES": "3,5"}, virtual_local_rank=True)
    assert (env["LOCAL_RANK"], env["CUDA_VISIBLE_DEVICES"], env["RANK"]) == ("0", "5", "5")
    assert env_of(2, {}, virtual_local_rank=True)["CUDA_VISIBLE_DEVICES"] == "2"
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        env_of(2, {"CUDA_VISIBLE_DEVICES": "3,5"}, virtual_local_rank=True)


def test_the_timer_pipe_is_given_only_when_timers_are_on() -> None:
    cfg = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=1)
    place = WorkerPlace(0, 0, "/e.json", "/tmp/watchdog_timer_x")
    assert worker_env(cfg, RDZV, place, {})["TORCHELASTIC_TIMER_FILE"] == "/tmp/watchdog_timer_x"
    assert "TORCHELASTIC_TIMER_FILE" not in env_of(0)


def test_worker_rank_0_hosting_is_told_to_the_workers() -> None:
    assert env_of(0)["TORCHELASTIC_USE_AGENT_STORE"] == "True"
    assert env_of(0, agent_store=False)["TORCHELASTIC_USE_AGENT_STORE"] == "False"
