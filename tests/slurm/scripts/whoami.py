"""Write what this worker was told (ranks, sizes, run id, master) and when it ran, as JSON.

Writes ``$OUT_DIR/<TORCHELASTIC_RUN_ID>_<RANK>.json``; stays ``$HOLD`` seconds (default 0) so
that concurrent steps overlap in time. Torch-free, so it starts fast.
"""

import json
import os
import socket
import time
from pathlib import Path

KEYS = (
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
    "TORCHELASTIC_RUN_ID",
)
began = time.time()
time.sleep(float(os.environ.get("HOLD", "0")))
seen: dict[str, object] = {k: os.environ.get(k) for k in KEYS}
seen.update(host=socket.gethostname(), began=began, ended=time.time())
name = f"{seen['TORCHELASTIC_RUN_ID']}_{seen['RANK']}.json"
(Path(os.environ["OUT_DIR"]) / name).write_text(json.dumps(seen))
