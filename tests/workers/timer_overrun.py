"""A worker whose elastic timer (torch's FileTimerClient) runs out; rank 1 keeps within its own.

Writes ``<attempt>_<rank>`` (its deadline, wall clock) to $OUT_DIR before the slow step.
"""

import os
import time
from pathlib import Path

import torch.distributed.elastic.timer as timer

timer.configure(timer.FileTimerClient(os.environ["TORCHELASTIC_TIMER_FILE"]))
rank, attempt = os.environ["RANK"], os.environ["TORCHELASTIC_RESTART_COUNT"]
out = Path(os.environ["OUT_DIR"])
with timer.expires(after=0.5, scope="warm_up"):
    pass  # released in time
after = 1.0 if rank == "0" else 30.0
(out / f"{attempt}_{rank}").write_text(repr(time.time() + after))
with timer.expires(after=after, scope="slow_step"):
    time.sleep(60 if rank == "0" else 2)
time.sleep(30)
