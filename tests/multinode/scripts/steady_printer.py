"""Join a gloo group, print LINES lines of ~1 KB to stdout, one every 10 ms, all-reduce, end.

Each line is ``rank R line I at T`` (T: time.time() when written) plus padding.
Appends one JSON line per worker start to ``$OUT_DIR/starts.jsonl`` (rank,
restart count), so a restart (a dropped node) shows as a second start.
"""

import json
import os
import sys
import time
from pathlib import Path

rank = os.environ["RANK"]
start = {"RANK": rank, "restart": os.environ["TORCHELASTIC_RESTART_COUNT"]}
with (Path(os.environ["OUT_DIR"]) / "starts.jsonl").open("a") as log:
    log.write(json.dumps(start) + "\n")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

dist.init_process_group("gloo")
pad = "x" * 1000
for i in range(int(os.environ["LINES"])):
    sys.stdout.write(f"rank {rank} line {i} at {time.time():.3f} {pad}\n")
    sys.stdout.flush()
    time.sleep(0.01)
total = torch.ones(1)
dist.all_reduce(total)
assert total.item() == dist.get_world_size()
dist.barrier()
dist.destroy_process_group()
