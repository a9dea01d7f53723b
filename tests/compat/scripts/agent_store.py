"""Use the launcher's store before init_process_group, then init gloo over it.

Every rank opens ``TCPStore(MASTER_ADDR, MASTER_PORT, is_master=False)`` first, as code
relying on torchrun's agent store does, writes a key and reads every other rank's; then
``init_process_group("gloo", init_method=argv[1])`` (``env://`` or ``tcp://`` built from
MASTER_ADDR and MASTER_PORT), an all_reduce, and a JSON line with what it saw.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
store = dist.TCPStore(addr, port, world, is_master=False, timeout=timedelta(seconds=60))
attempt = os.environ["TORCHELASTIC_RESTART_COUNT"]
store.set(f"seen/{rank}", f"{attempt}:{world}")
seen = [v.decode() for v in store.multi_get([f"seen/{r}" for r in range(world)])]
method = "env://" if sys.argv[1] == "env" else f"tcp://{addr}:{port}"
dist.init_process_group("gloo", init_method=method, rank=rank, world_size=world)
total = torch.tensor([float(rank)])
dist.all_reduce(total)
dist.barrier()
dist.destroy_process_group()
# One write per line: print() under PYTHONUNBUFFERED writes the text and its newline
# separately, and ranks sharing torchrun's stdout can glue their lines together.
line = json.dumps({"rank": rank, "seen": seen, "sum": total.item(), "port": port})
sys.stdout.write(line + "\n")
sys.stdout.flush()
