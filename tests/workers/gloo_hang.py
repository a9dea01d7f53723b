"""Two or more gloo ranks; rank 1 misbehaves as $HANG_MODE says.

- ``stall``: rank 1 sleeps in ``load_batch()`` for $STALL_SECONDS (default
  forever) on the first attempt; the other ranks wait in ``all_reduce``.
- ``mismatch``: rank 0 waits in ``all_reduce``, rank 1 in ``broadcast``.
- ``long_call``: rank 1 spends $STALL_SECONDS in one C call (libc ``sleep``),
  then every rank goes on and the job ends well.
"""

import ctypes
import os
import time

import torch
import torch.distributed as dist

MODE = os.environ.get("HANG_MODE", "stall")
STALL = float(os.environ.get("STALL_SECONDS", "1e9"))
RANK = int(os.environ["RANK"])
FIRST_ATTEMPT = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"


def load_batch() -> torch.Tensor:
    if RANK == 1 and MODE == "stall" and FIRST_ATTEMPT:
        time.sleep(STALL)
    if RANK == 1 and MODE == "long_call":
        ctypes.CDLL(None).sleep(int(STALL))
    return torch.ones(4)


def step(batch: torch.Tensor) -> None:
    if MODE == "mismatch" and RANK == 1:
        dist.broadcast(batch, src=0)
    else:
        dist.all_reduce(batch)


def main() -> None:
    dist.init_process_group("gloo")
    for _ in range(3):
        step(load_batch())
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
