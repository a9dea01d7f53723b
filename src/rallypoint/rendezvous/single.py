"""Rendezvous of a job that has one node: no store needed.

Covers ``--standalone``, torchrun's automatic single-node c10d, and static
rendezvous with ``--nnodes=1``. MASTER_ADDR follows torchrun: ``--master-addr``
verbatim for static, else ``--local-addr`` or this host's FQDN. The port stays
the same for every round, as torchrun's does;
the agent serves torch's store on it (see ``ports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rallypoint.config import LaunchConfig
from rallypoint.rendezvous.ports import open_master_port
from rallypoint.rendezvous.result import RendezvousResult

if TYPE_CHECKING:
    from rallypoint.rendezvous.machine import RunningDecision


class SingleNodeRendezvous:
    """Every round has exactly this node, as group rank 0."""

    def __init__(self, config: LaunchConfig, host: str) -> None:
        self._config = config
        static = config.rdzv_backend == "static"
        self._addr = (config.master_addr or "127.0.0.1") if static else host
        port = config.master_port or 0 if static else 0
        self._ports = open_master_port(port, config.agent_store)
        self._round = 0
        self._restarts = 0

    def serve_store(self) -> None:
        """Start answering torch's store (the first workers may already be waiting on it)."""
        self._ports.serve()

    async def next_round(self) -> RendezvousResult:
        """The next round: this node alone, with a fresh torch store."""
        self._ports.fresh_store()
        return self.round_now()

    def round_now(self) -> RendezvousResult:
        """The next round, without waiting for anything (there is nothing to wait for)."""
        nproc = self._config.nproc_per_node
        result = RendezvousResult(
            round=self._round,
            group_rank=0,
            group_world_size=1,
            base_rank=0,
            world_size=nproc,
            base_role_rank=0,
            role_world_size=nproc,
            master_addr=self._addr,
            master_port=self._ports.port,
            restarts=self._restarts,
        )
        self._round += 1
        return result

    def listen(self, callback: Callable[[], None]) -> None:
        """Nothing ever changes for a single node."""

    def running_decision(self) -> RunningDecision:
        """Always keep running."""
        from rallypoint.rendezvous.machine import Change, RunningDecision

        return RunningDecision(Change.KEEP)

    def stack_board(self) -> None:
        """One node judges its own ranks: nothing to share."""
        return None

    @property
    def failure(self) -> BaseException | None:
        """No background task, no failure."""
        return None

    async def spend_restart(self) -> int:
        """Count a restart locally."""
        self._restarts += 1
        return self._restarts

    async def close_job(self, succeeded: bool, message: str) -> None:
        """Nobody else to tell."""

    async def finish(self) -> None:
        """Nobody to wait for."""

    async def close(self) -> None:
        """Release the master port."""
        self.release()

    def release(self) -> None:
        """Release the master port (callable without an event loop)."""
        self._ports.release()
