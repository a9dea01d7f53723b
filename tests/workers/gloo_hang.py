"""Two or more gloo ranks; rank 1 misbehaves as $HANG_MODE says.

- ``stall``: rank 1 sleeps in ``load_batch()`` for $STALL_SECONDS (default
  forever) on the first attempt; the other ranks wait in ``all_reduce``.
- ``mismatch``: rank 0 waits in ``all_reduce``, rank 1 in ``broadcast``.
- ``segv``: rank 1 dereferences a null pointer in ``deref_null()``.
- ``long_call``: rank 1 spends $STALL_SECONDS in one C call (libc ``sleep``)
  in its first step, then every rank goes on and the job ends well.

$GLOO_TIMEOUT_SECONDS bounds every collective (bench/hang.py gives torchrun a short one).
"""

import ctypes
import datetime
import os
import time

import torch
import torch.distributed as dist

MODE = os.environ.get("HANG_MODE", "stall")
STALL = float(os.environ.get("STALL_SECONDS", "1e9"))
RANK = int(os.environ["RANK"])
FIRST_ATTEMPT = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"


def deref_null() -> None:
    ctypes.string_at(0)


def load_batch() -> torch.Tensor:
    if RANK == 1 and MODE == "stall" and FIRST_ATTEMPT:
        if "STALL_MARK" in os.environ:
            with open(os.environ["STALL_MARK"], "w") as mark:
                mark.write(repr(time.time()))
        time.sleep(STALL)
    if RANK == 1 and MODE == "segv":
        deref_null()
    if RANK == 1 and MODE == "long_call" and STEP[0] == 0:
        ctypes.CDLL(None).sleep(int(STALL))
    return torch.ones(4)


def step(batch: torch.Tensor) -> None:
    if MODE == "mismatch" and RANK == 1:
        dist.broadcast(batch, src=0)
    else:
        dist.all_reduce(batch)


STEP = [0]


def main() -> None:
    timeout = float(os.environ.get("GLOO_TIMEOUT_SECONDS", "1800"))  # torch's default
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    for STEP[0] in range(3):
        step(load_batch())
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
