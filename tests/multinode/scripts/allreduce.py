"""All-reduce each rank's (RANK + 1) with gloo and write what this worker saw as JSON.

Writes ``$OUT_DIR/<attempt>_<rank>.json`` with ranks, sizes, master and the sum.
"""

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
value = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(value)
env = {
    k: os.environ[k]
    for k in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "ROLE_RANK",
        "ROLE_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCHELASTIC_RESTART_COUNT",
    )
}
out = Path(os.environ["OUT_DIR"]) / f"{os.environ['TORCHELASTIC_RESTART_COUNT']}_{env['RANK']}.json"
out.write_text(json.dumps({**env, "sum": value.item()}))
dist.barrier()  # leave together: no rank tears down while a peer still talks
dist.destroy_process_group()
