"""Append "<RANK> <TORCHELASTIC_RESTART_COUNT>" to $COMPAT_ATTEMPT_LOG, then exit per $COMPAT_MODE.

Modes: ``exit3_rank1`` (rank 1 exits 3, others 0), ``fail_first`` (exit 1 while the
restart count is 0), ``always_fail`` (exit 1 every time).
"""

import os
import sys

rank = os.environ["RANK"]
count = os.environ["TORCHELASTIC_RESTART_COUNT"]
with open(os.environ["COMPAT_ATTEMPT_LOG"], "a") as log:
    log.write(f"{rank} {count}\n")
mode = os.environ["COMPAT_MODE"]
if mode == "exit3_rank1" and rank == "1":
    sys.exit(3)
if (mode == "fail_first" and count == "0") or mode == "always_fail":
    sys.exit(1)
