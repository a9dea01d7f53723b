"""Every rank raises the same error at the same moment (never imports torch).

Each rank writes its pid to ``$COMPAT_DIR/rank<RANK>.pid``, waits for the file
``$COMPAT_DIR/go``, then raises an identical RuntimeError (same message, same
frames) on every rank.
"""

import os
import sys
import time

assert "torch" not in sys.modules
folder = os.environ["COMPAT_DIR"]
target = os.path.join(folder, f"rank{os.environ['RANK']}.pid")
with open(target + ".tmp", "w") as out:
    out.write(str(os.getpid()))
os.replace(target + ".tmp", target)


def wait_for_go() -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(folder, "go")):
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.01)


def step() -> None:
    raise RuntimeError("collective timed out in step 7")


wait_for_go()
step()
