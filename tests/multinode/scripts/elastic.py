"""A job that runs STEPS all-reduces, 0.1 s apart, and logs each attempt it takes part in.

Appends one JSON line per worker start to ``$OUT_DIR/starts.jsonl`` (time, world size,
restart count, rank), one once past ``init_process_group`` to ``$OUT_DIR/joined.jsonl``
(with whether torch was loaded before the script ran) and one per finish to
``$OUT_DIR/finished.jsonl``. A gloo error (a peer vanished) exits 1, as a real training
script would. Before ``init_process_group`` each worker marks its world size in the
launcher's store at MASTER_ADDR:MASTER_PORT and appends to ``$OUT_DIR/stores.jsonl`` the
marks of any *other* world size it finds there, which would have leaked from an earlier
attempt.
"""

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

started = time.time()
PRELOADED = "torch" in sys.modules  # a warm restart's standby imported it already
out = Path(os.environ["OUT_DIR"])
info = {
    k: os.environ[k]
    for k in (
        "RANK",
        "WORLD_SIZE",
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "TORCHELASTIC_RESTART_COUNT",
        "MASTER_ADDR",
    )
}
with (out / "starts.jsonl").open("a") as log:
    log.write(json.dumps({"time": started, **info}) + "\n")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

world = os.environ["WORLD_SIZE"]
master = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
store = dist.TCPStore(*master, is_master=False, timeout=timedelta(seconds=60))
store.set(f"world/{world}/{info['RANK']}", "1")
marks = [k for k in store.list_keys() if k.startswith("world/")]
leaked = sorted(k for k in marks if not k.startswith(f"world/{world}/"))
with (out / "stores.jsonl").open("a") as log:
    log.write(json.dumps({"leaked": leaked, **info}) + "\n")
dist.init_process_group("gloo")
with (out / "joined.jsonl").open("a") as log:  # past import torch and init_process_group
    log.write(json.dumps({"time": time.time(), "preloaded": PRELOADED, **info}) + "\n")
try:
    for _ in range(int(os.environ.get("STEPS", "30"))):
        value = torch.ones(1)
        dist.all_reduce(value)
        assert value.item() == dist.get_world_size()
        time.sleep(0.1)
except RuntimeError as exc:
    print(f"collective failed: {exc}", file=sys.stderr)
    sys.exit(1)
with (out / "finished.jsonl").open("a") as log:
    log.write(json.dumps({"time": time.time(), **info}) + "\n")
dist.barrier()  # leave together: no rank tears down while a peer still talks
dist.destroy_process_group()
