"""Memory worker: write a ready marker (argv[2]) and sleep argv[1] seconds."""

import sys
import time

with open(sys.argv[2], "w") as f:
    f.write("ready")
time.sleep(float(sys.argv[1]))
