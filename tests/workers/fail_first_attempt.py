"""Fail (exit 1) on the first attempt only; record every attempt's restart count."""

import os
import sys
from pathlib import Path

count = os.environ["TORCHELASTIC_RESTART_COUNT"]
log = Path(sys.argv[1])
with log.open("a") as out:
    out.write(f"{os.environ['RANK']}:{count}\n")
if os.environ.get("ALWAYS_FAIL") or count == "0":
    sys.exit(1)
