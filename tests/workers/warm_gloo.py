"""A gloo job whose rank 1 crashes once; each attempt records when it got past ``import torch``.

argv[1] is a folder. Attempt 0: ranks join the group, then rank 1 writes
``crash`` (the time) and exits 1 while rank 0 waits in a collective. Attempt
1: every rank writes ``rank<N>.json``: its times (first line, after ``import
torch``, after ``init_process_group``), whether CUDA was initialised before
the script touched it, its pid and the all-reduce sum.
"""

import time

STARTED = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

IMPORTED = time.time()
CUDA_BEFORE = torch.cuda.is_initialized()

import torch.distributed as dist  # noqa: E402


def main() -> None:
    folder = sys.argv[1]
    dist.init_process_group("gloo")
    joined = time.time()
    rank, restart = dist.get_rank(), os.environ["TORCHELASTIC_RESTART_COUNT"]
    if restart == "0" and rank == 1:
        with open(os.path.join(folder, "crash"), "w") as out:
            out.write(repr(time.time()))
        os._exit(1)
    total = torch.tensor([rank + 1.0])
    dist.all_reduce(total)
    record = {
        "started": STARTED,
        "imported": IMPORTED,
        "joined": joined,
        "cuda_initialized": CUDA_BEFORE,
        "pid": os.getpid(),
        "sum": total.item(),
        "world": dist.get_world_size(),
    }
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as out:
        json.dump(record, out)
    dist.destroy_process_group()


main()
