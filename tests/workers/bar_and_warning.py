"""Local rank 0 draws a bar on stderr (no newline for a second); rank 1 warns meanwhile."""

import os
import sys
import time

if os.environ["LOCAL_RANK"] == "0":
    for step in range(4):
        sys.stderr.write(f"\rbar {step}/3")
        sys.stderr.flush()
        time.sleep(0.3)
    sys.stderr.write("\n")
else:
    time.sleep(0.45)
    sys.stderr.write("warning from rank 1\n")
