"""Rendezvous worker: its first statement after ``import time`` takes the time.

Writes ``time.time()`` to ``<argv[1]>/<pid>`` and exits 0, so the harness can
tell when every worker of the job has started.
"""

import time

STARTED = time.time()

import os  # noqa: E402
import sys  # noqa: E402

with open(os.path.join(sys.argv[1], str(os.getpid())), "w") as f:
    f.write(repr(STARTED))
