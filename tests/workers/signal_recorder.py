"""Record which signal reached this worker in $PID_DIR/signal_<local rank>, then exit 0."""

import os
import signal
import sys
import time
from pathlib import Path

folder = Path(os.environ["PID_DIR"])
rank = os.environ["LOCAL_RANK"]


def record(signum: int, _frame: object) -> None:
    (folder / f"signal_{rank}").write_text(signal.Signals(signum).name)
    sys.exit(0)


for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
    signal.signal(sig, record)
(folder / f"worker_{rank}").write_text(str(os.getpid()))
time.sleep(1000)
