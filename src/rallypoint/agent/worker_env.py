"""The environment of each worker (contract §2.1), as a pure function.

Every value is a string. Workers inherit the launcher's whole environment
(``base``), then these keys are set on top, as torchrun does.
``TORCHELASTIC_USE_AGENT_STORE`` is ``"True"``, as under torchrun: the agent
serves torch's store on MASTER_PORT; ``"False"`` when worker rank 0 hosts it
instead (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, see rendezvous/ports.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rallypoint.config import LaunchConfig
from rallypoint.health import FILE_VARIABLE
from rallypoint.rendezvous.result import RendezvousResult


@dataclass(frozen=True, slots=True)
class WorkerPlace:
    """Where one worker sits in the job."""

    local_rank: int
    restart_count: int
    error_file: str
    timer_file: str = ""  # the elastic timers' pipe, when they are on


def _cuda_devices(base: Mapping[str, str], local_rank: int) -> str:
    visible = base.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return str(local_rank)
    entries = visible.split(",")
    if local_rank >= len(entries):
        raise ValueError(f"local rank {local_rank} has no entry in CUDA_VISIBLE_DEVICES={visible}")
    return entries[local_rank]


def worker_env(
    config: LaunchConfig, rdzv: RendezvousResult, place: WorkerPlace, base: Mapping[str, str]
) -> dict[str, str]:
    """The full environment of the worker at ``place``."""
    local = place.local_rank
    env = dict(base)
    env.update(
        {
            "LOCAL_RANK": "0" if config.virtual_local_rank else str(local),
            "RANK": str(rdzv.base_rank + local),
            "GROUP_RANK": str(rdzv.group_rank),
            "ROLE_RANK": str(rdzv.base_role_rank + local),
            "ROLE_NAME": config.role,
            "LOCAL_WORLD_SIZE": str(config.nproc_per_node),
            "WORLD_SIZE": str(rdzv.world_size),
            "GROUP_WORLD_SIZE": str(rdzv.group_world_size),
            "ROLE_WORLD_SIZE": str(rdzv.role_world_size),
            "MASTER_ADDR": rdzv.master_addr,
            "MASTER_PORT": str(rdzv.master_port),
            "TORCHELASTIC_RESTART_COUNT": str(place.restart_count),
            "TORCHELASTIC_MAX_RESTARTS": str(config.max_restarts),
            "TORCHELASTIC_RUN_ID": config.run_id,
            "TORCHELASTIC_USE_AGENT_STORE": str(config.agent_store),
            "TORCH_NCCL_ASYNC_ERROR_HANDLING": base.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"),
            "TORCHELASTIC_ERROR_FILE": place.error_file,
        }
    )
    if config.virtual_local_rank:
        env["CUDA_VISIBLE_DEVICES"] = _cuda_devices(base, local)
    if place.timer_file:
        env["TORCHELASTIC_TIMER_FILE"] = place.timer_file
    return env


RENDEZVOUS_KEYS = (  # the values the rendezvous decides
    "RANK",
    "GROUP_RANK",
    "ROLE_RANK",
    "WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
ROUND_KEYS = frozenset(  # every value that may change from one round to the next
    {
        *RENDEZVOUS_KEYS,
        "TORCHELASTIC_RESTART_COUNT",
        "TORCHELASTIC_ERROR_FILE",
        FILE_VARIABLE,  # the elastic timers' pipe is made per attempt
    }
)
_NO_ROUND = RendezvousResult(0, 0, 1, 0, 1, 0, 1, "", 0)


def standby_env(config: LaunchConfig, local_rank: int, base: Mapping[str, str]) -> dict[str, str]:
    """What the worker at ``local_rank`` has whatever the round: its environment minus ROUND_KEYS.

    A standby starts with this; the hand-over gives it the whole environment.
    """
    env = worker_env(config, _NO_ROUND, WorkerPlace(local_rank, 0, ""), base)
    return {key: value for key, value in env.items() if key not in ROUND_KEYS}
