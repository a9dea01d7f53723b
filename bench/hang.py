"""A stuck rank, side by side: time from the stall to the launcher's exit, and whom it blames.

Stdlib only; uses bench/run.py's helpers. Runs ``tests/workers/gloo_hang.py
stall`` (two gloo ranks; rank 1 sleeps in ``load_batch()`` for ever, rank 0
waits in ``all_reduce``) under torchrun, whose only way out is gloo's own
timeout (``--gloo-timeout`` seconds here; torch's default is 30 minutes), and
under rallypoint with ``--hang-timeout``. The stall's time comes from the
worker itself (``STALL_MARK``); the blamed rank from each summary.
Usage: ``python bench/hang.py [--runs N] [--gloo-timeout S] [--hang-timeout S]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from run import resolve

JOB = Path(__file__).resolve().parent.parent / "tests" / "workers" / "gloo_hang.py"
ROOT_RANK = re.compile(
    r"Root Cause \(first observed failure\):\n\[0\]:\n(?:.*\n){2}\s+rank\s+: (\d+)"
)


def once(argv: list[str], gloo_timeout: float, tmp: Path) -> tuple[float, str, str]:
    mark = tmp / "stalled_at"
    mark.unlink(missing_ok=True)
    env = dict(os.environ, HANG_MODE="stall", STALL_MARK=str(mark))
    env["GLOO_TIMEOUT_SECONDS"] = str(gloo_timeout)
    done = subprocess.run([*argv, str(JOB)], env=env, capture_output=True, text=True, timeout=900)
    took = time.time() - float(mark.read_text())
    root = ROOT_RANK.search(done.stderr)
    first = next((ln for ln in done.stderr.splitlines() if ln.startswith("rallypoint: rank")), "")
    return took, root[1] if root else "?", first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--gloo-timeout", type=float, default=60.0)
    p.add_argument("--hang-timeout", type=float, default=10.0)
    args = p.parse_args()
    common = ["--standalone", "--nproc-per-node=2"]
    launchers = {
        "torchrun": [resolve("torchrun", None), *common],
        "rallypoint": [resolve("rallypoint", None), *common, f"--hang-timeout={args.hang_timeout}"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in launchers.items():
            runs = [once(argv, args.gloo_timeout, Path(tmp)) for _ in range(args.runs)]
            median = statistics.median(t for t, _, _ in runs)
            print(f"| {name} | {median:.1f} s | rank {runs[0][1]} | {runs[0][2] or '-'} |")


if __name__ == "__main__":
    main()
