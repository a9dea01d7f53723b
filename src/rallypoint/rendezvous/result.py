"""What a completed rendezvous round tells one node."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RendezvousResult:
    """One node's view of a completed round.

    Attributes:
        round: the round number (0 for the first).
        group_rank: this node's rank among the nodes of the round.
        group_world_size: number of nodes in the round.
        base_rank: global rank of this node's local rank 0.
        world_size: total number of workers in the round.
        base_role_rank: role rank of this node's local rank 0.
        role_world_size: number of workers with this node's role.
        master_addr: where worker rank 0 serves torch's store.
        master_port: the port it serves on.
        restarts: failure restarts of the job before this round (job-wide).
    """

    round: int
    group_rank: int
    group_world_size: int
    base_rank: int
    world_size: int
    base_role_rank: int
    role_world_size: int
    master_addr: str
    master_port: int
    restarts: int = 0
