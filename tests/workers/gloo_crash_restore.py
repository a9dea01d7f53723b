"""Save, crash, restore: a gloo job whose rank 1 dies after attempt 0's first all-reduce.

Each attempt marks itself in the launcher's store (MASTER_ADDR:MASTER_PORT) before
``init_process_group`` and records any mark of another attempt it finds there, which
would have leaked; the restarted attempt all-reduces again (it hangs or fails if it reads
a stale gloo address). Writes ``OUT/<attempt>_<rank>.json``.
"""

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

out, attempt = Path(sys.argv[1]), os.environ["TORCHELASTIC_RESTART_COUNT"]
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
master = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
store = dist.TCPStore(*master, is_master=False, timeout=timedelta(seconds=60))
store.set(f"attempt/{attempt}/{rank}", "1")
marks = [k for k in store.list_keys() if k.startswith("attempt/")]
leaked = sorted(k for k in marks if not k.startswith(f"attempt/{attempt}/"))
dist.init_process_group("gloo", timeout=timedelta(seconds=60))
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
(out / f"{attempt}_{rank}.json").write_text(json.dumps({"leaked": leaked, "sum": total.item()}))
if attempt == "0" and rank == 1:
    os._exit(1)  # the crash, after the checkpoint
if attempt == "0":
    dist.barrier()  # waits for the dead rank until the agent stops this attempt
dist.barrier()
dist.destroy_process_group()
