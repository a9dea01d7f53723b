"""Crash-to-restart worker.

First attempt (TORCHELASTIC_RESTART_COUNT=0): write ``time.time()`` to
``<dir>/crash`` and exit 1 at once. Second attempt (count 1): write the time
taken on this script's first line to ``<dir>/restart`` and exit 0.
``<dir>`` is argv[1], or else the BENCH_STAMP_DIR environment variable.
"""

import time

STARTED = time.time()

import os  # noqa: E402
import sys  # noqa: E402


def stamp_dir() -> str:
    return sys.argv[1] if len(sys.argv) > 1 else os.environ["BENCH_STAMP_DIR"]


def write(name: str, value: float) -> None:
    with open(os.path.join(stamp_dir(), name), "w") as f:
        f.write(repr(value))


def main() -> None:
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        write("crash", time.time())
        os._exit(1)
    write("restart", STARTED)


main()
