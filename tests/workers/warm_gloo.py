"""A gloo job whose last rank crashes once; each attempt records when it got past ``import torch``.

argv[1] is a folder. Attempt 0: ranks join the group, then the last rank waits
until the standbys (if any) are done importing, as ``rallypoint status`` shows,
writes ``crash`` (the time) and exits 1 while the others wait in a collective.
Attempt 1: every rank writes ``rank<N>.json``: its times (first line, after ``import
torch``, after ``init_process_group``), whether CUDA was initialised before
the script touched it, its pid and the all-reduce sum.
"""

import time

STARTED = time.time()

import json  # noqa: E402
import os  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

IMPORTED = time.time()
CUDA_BEFORE = torch.cuda.is_initialized()

import torch.distributed as dist  # noqa: E402


def crash(folder: str) -> None:
    with open(os.path.join(folder, "crash"), "w") as out:
        out.write(repr(time.time()))
    os._exit(1)


def main() -> None:
    folder = sys.argv[1]
    first = os.environ["TORCHELASTIC_RESTART_COUNT"] == "0"
    last = os.environ["RANK"] == str(int(os.environ["WORLD_SIZE"]) - 1)
    dist.init_process_group("gloo")
    joined = time.time()
    rank = dist.get_rank()
    if first and last:
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standbys_ready.py")
        runpy.run_path(helper)["wait_until_ready"]()  # then the restart is a warm one
        crash(folder)
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
