"""Print, per thread of this worker other than the main one, whether it blocks SIGUSR1."""

import os
import signal
import time

time.sleep(0.5)  # the bootstrap's sampler thread has started by now
main = os.getpid()
for task in sorted(os.listdir("/proc/self/task")):
    if int(task) != main:
        with open(f"/proc/self/task/{task}/status") as status:
            mask = next(line for line in status if line.startswith("SigBlk:")).split()[1]
        print("blocks" if int(mask, 16) >> (signal.SIGUSR1 - 1) & 1 else "open")
