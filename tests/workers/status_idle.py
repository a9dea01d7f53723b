"""Every rank prints a line, then idles in ``idle()`` until $IDLE_SECONDS pass."""

import os
import time


def idle() -> None:
    print(f"rank {os.environ['RANK']} idling", flush=True)
    time.sleep(float(os.environ.get("IDLE_SECONDS", "60")))


if __name__ == "__main__":
    idle()
