"""Console log throughput under tee: a worker floods stdout; how much does the launcher cost?

Side by side in one run, with hyperfine (-N, output to /dev/null): the worker alone
(``python -u flood.py N``), then ``torchrun`` and ``rallypoint`` with
``--standalone --nproc-per-node=1 --tee=3 --log-dir=DIR flood.py N``. The launch cost of each
launcher is measured too (N = 0) and subtracted, so what is left is the cost of carrying
N lines to the console and the log file. Prints a Markdown table of medians.

Usage: ``python bench/logs.py [--lines N] [--runs R]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOOD = HERE / "workers" / "flood.py"
BIN = Path(sys.executable).parent


def median_of(command: str, runs: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                "hyperfine",
                "-N",
                "--warmup",
                "1",
                "--runs",
                str(runs),
                "--export-json",
                out.name,
                command,
            ],
            check=True,
            capture_output=True,
        )
        return float(json.loads(Path(out.name).read_text())["results"][0]["median"])


def launcher(name: str, lines: int, log_dir: str) -> str:
    return (
        f"{BIN / name} --standalone --nproc-per-node=1 --tee=3 --log-dir={log_dir} {FLOOD} {lines}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench_logs_")
    alone = median_of(f"{sys.executable} -u {FLOOD} {args.lines}", args.runs)
    rows = [f"| worker alone | {args.lines / alone:,.0f} lines/s | {alone:.2f} s | - |"]
    for name in ("torchrun", "rallypoint"):
        empty = median_of(launcher(name, 0, log_dir), args.runs)
        full = median_of(launcher(name, args.lines, log_dir), args.runs)
        carried = max(full - empty, 1e-9)
        rows.append(
            f"| {name} --tee=3 | {args.lines / carried:,.0f} lines/s | {full:.2f} s "
            f"({empty:.2f} s of it launching) | {carried / alone:.2f}x |"
        )
    print(f"{args.lines:,} lines of ~60 bytes, medians of {args.runs} runs\n")
    print("| run | throughput | wall time | time vs worker alone |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
