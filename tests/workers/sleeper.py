"""Write our pid and a grandchild's pid (a `sleep 1000`) to $PID_DIR, then sleep.

$IGNORE_TERM ignores SIGTERM; $IGNORE_SIGNALS (``SIGUSR1,...``) ignores those.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

folder = Path(os.environ["PID_DIR"])
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for name in os.environ.get("IGNORE_SIGNALS", "").split(","):
    if name:  # as a Slurm-aware trainer handles SIGUSR1 (Lightning's requeue)
        signal.signal(signal.Signals[name], signal.SIG_IGN)
child = subprocess.Popen(["sleep", "1000"])
(folder / f"worker_{os.environ['LOCAL_RANK']}").write_text(f"{os.getpid()} {child.pid}")
sys.stdout.write("ready\n")
sys.stdout.flush()
time.sleep(1000)
