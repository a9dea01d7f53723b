"""Print a numbered line per rank to stdout and to stderr; COUNT lines each (default 2)."""

import os
import sys

rank = os.environ["LOCAL_RANK"]
for i in range(int(os.environ.get("COUNT", "2"))):
    sys.stdout.write(f"out {rank} {i}\n")
    sys.stderr.write(f"err {rank} {i}\n")
if os.environ.get("NO_NEWLINE"):
    sys.stdout.write(f"last {rank}")
