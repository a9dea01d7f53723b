"""A small DDP training job: gloo on CPU, nccl when there is a GPU.

Run it with ``rallypoint --standalone --nproc-per-node=2 examples/ddp_train.py``
(or the same with ``torchrun``). Every rank trains a linear model on its shard
of a fixed synthetic data set; rank 0 prints the final loss and a checksum of
the weights, which are the same under either launcher.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backend", default="nccl" if torch.cuda.is_available() else "gloo")
    return parser.parse_args()


def shard(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(64 * world, 8, generator=generator)
    targets = inputs @ torch.arange(1.0, 9.0).unsqueeze(1) + 0.5
    return inputs[rank::world], targets[rank::world]


def main() -> None:
    args = parse()
    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device(f"cuda:{local_rank}" if args.backend == "nccl" else "cpu")
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(8, 1).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    inputs, targets = (t.to(device) for t in shard(rank, world))
    for _ in range(args.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
    total = loss.detach().clone()
    dist.all_reduce(total)
    checksum = sum(float(p.detach().sum()) for p in model.parameters())
    if rank == 0:
        print(f"world={world} loss={float(total) / world:.6f} checksum={checksum:.6f}", flush=True)
    dist.barrier()  # leave together: no rank tears down while a peer still talks
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
