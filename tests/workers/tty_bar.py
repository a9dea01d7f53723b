"""What a worker sees of its terminal, then a tqdm-style bar on stderr.

Prints one JSON line (stderr) with isatty of fds 0-2, the window size of fd 2,
whether /dev/tty opens, and whether it leads its own session; then STEPS
updates ``\\r step I at T cols C`` every PERIOD seconds (T: time.time() when
written, C: fd 2's width then), each flushed, without a newline until the end.
"""

import json
import os
import sys
import time


def controlling_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
    except OSError:
        return False
    return True


def columns() -> int:
    try:
        return os.get_terminal_size(2).columns
    except OSError:
        return -1


probe = {
    "isatty": [os.isatty(fd) for fd in (0, 1, 2)],
    "size": list(os.get_terminal_size(2)) if os.isatty(2) else None,
    "controlling_terminal": controlling_terminal(),
    "session_leader": os.getsid(0) == os.getpid(),
}
sys.stderr.write("probe " + json.dumps(probe) + "\n")
sys.stderr.flush()
for step in range(int(os.environ.get("STEPS", "10"))):
    sys.stderr.write(f"\r step {step} at {time.time():.3f} cols {columns()} ")
    sys.stderr.flush()
    time.sleep(float(os.environ.get("PERIOD", "0.2")))
sys.stderr.write("\n")
