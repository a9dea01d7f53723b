"""Write the start of a line to stdout and stderr, wait PAUSE seconds, then end it."""

import os
import sys
import time

for stream in (sys.stdout, sys.stderr):
    stream.write(f"half at {time.time():.3f}")
    stream.flush()
time.sleep(float(os.environ.get("PAUSE", "3")))
for stream in (sys.stdout, sys.stderr):
    stream.write(f" ended at {time.time():.3f}\n")
    stream.flush()
