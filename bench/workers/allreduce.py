"""Kill-to-restart worker: gloo all_reduce in 0.1 s steps, logging to JSON lines.

argv[1] is the log (appended by every worker of every node and attempt),
argv[2] the number of steps (default 60). The ``start`` line holds the time
taken right after ``import time`` (before torch is imported), WORLD_SIZE and
the restart count; a ``ready`` line follows the first all_reduce.
"""

import time

STARTED = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def log(event: str, **fields: object) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one O_APPEND write: lines never interleave
    finally:
        os.close(fd)


def main() -> None:
    env = os.environ
    world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
    restart = int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))
    log("start", t=STARTED, world_size=world, rank=rank, restart=restart)
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    tensor = torch.ones(1)
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    for step in range(steps):
        dist.all_reduce(tensor)
        if step == 0:
            log("ready", t=time.time(), world_size=world, rank=rank, restart=restart)
        time.sleep(0.1)
    dist.destroy_process_group()


main()
