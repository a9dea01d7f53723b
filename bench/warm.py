"""Warm restarts: crash to the restarted workers past ``import torch``, three ways, and memory.

Stdlib only; uses bench/run.py's helpers. For each of torchrun, rallypoint
with ``--warm=off`` (cold) and rallypoint with ``--warm=torch`` (warm), runs
``tests/workers/warm_gloo.py`` with ``--max-restarts=1``: one gloo
worker that exits 1 once, past ``init_process_group`` and once its standby (if
any) is done importing, as a restart takes only such a standby (with 2 workers,
torchrun 2.13's restarted group hung in ``init_process_group`` now and then
here, for 300 s). One warm-up each, then N runs alternating; the measures are
the seconds from the crash to the restarted worker past ``import torch`` and
past ``init_process_group``, from the worker's own timestamps. Then the
resident memory of a standby once its imports are done.
Usage: ``python bench/warm.py [--runs N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import RUN_TIMEOUT_S, descendants, resolve, status_kib, wait_ready

HERE = Path(__file__).resolve().parent
GLOO_JOB = HERE.parent / "tests" / "workers" / "warm_gloo.py"
SLEEPER = HERE / "workers" / "sleep.py"
RESTART = ("--standalone", "--nproc-per-node=1", "--max-restarts=1")
STEADY_S = 1.5  # a standby's RSS unchanged this long: its imports are done


def variants(torchrun: str, rallypoint: str) -> dict[str, list[str]]:
    return {
        "torchrun": [torchrun, *RESTART],
        "rallypoint cold": [rallypoint, *RESTART, "--warm=off"],
        "rallypoint warm": [rallypoint, *RESTART, "--warm=torch"],
    }


def crash_once(cmd: list[str]) -> tuple[float, float]:
    """(crash to past ``import torch``, crash to past ``init_process_group``) in seconds."""
    with tempfile.TemporaryDirectory(prefix="rp-warm-") as d:
        run = subprocess.run(
            [*cmd, str(GLOO_JOB), d], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        if run.returncode != 0:
            raise RuntimeError(f"{cmd} exited {run.returncode}:\n{run.stderr[-2000:]}")
        crash = float(Path(d, "crash").read_text())
        rank = json.loads(Path(d, "rank0.json").read_text())
    return rank["imported"] - crash, rank["joined"] - crash


def bench_crash(cmds: dict[str, list[str]], runs: int) -> dict[str, list[tuple[float, float]]]:
    for cmd in cmds.values():
        crash_once(cmd)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for i in range(runs):
        for name, cmd in cmds.items():
            samples[name].append(crash_once(cmd))
        print(f"  run {i + 1}/{runs} done", file=sys.stderr)
    return samples


def standby_pids(launcher: int) -> list[int]:
    found = []
    for pid in descendants(launcher):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[3:4] == [b"standby"]:
            found.append(pid)
    return found


def standby_rss_once(rallypoint: str) -> list[float]:
    """MiB resident of the standby once its ``import torch`` is done."""
    with tempfile.TemporaryDirectory(prefix="rp-standby-") as d:
        ready = Path(d, "ready")
        cmd = [rallypoint, *RESTART, "--warm=torch", str(SLEEPER), "120", str(ready)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(proc, ready)
            return [kib / 1024 for kib in steady_rss(proc.pid, 1)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=RUN_TIMEOUT_S)


def steady_rss(launcher: int, count: int) -> list[int]:
    """Poll the standbys' VmRSS until none has changed for STEADY_S."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    last: list[int] = []
    steady_since = time.monotonic()
    while time.monotonic() < deadline:
        pids = sorted(standby_pids(launcher))
        now = [status_kib(p, "VmRSS") for p in pids]
        if len(now) != count or now != last:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since > STEADY_S:
            return now
        time.sleep(0.1)
    raise RuntimeError("the standbys' memory never settled")


def table(samples: dict[str, list[tuple[float, float]]], rss: list[float]) -> str:
    names = list(samples)
    rows = [
        "| measure | " + " | ".join(f"{n} median" for n in names) + " | torchrun / warm |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for index, label in enumerate(("past `import torch`", "past `init_process_group`")):
        medians = [statistics.median(s[index] for s in samples[n]) * 1000 for n in names]
        ratio = medians[0] / medians[-1]
        cells = " | ".join(f"{m:.0f} ms" for m in medians)
        rows.append(f"| crash to restarted workers {label} | {cells} | {ratio:.0f}x |")
    rss_cell = f"{statistics.median(rss):.0f} MiB"
    rows.append(f"| RSS per standby (torch 2.13 CPU) | - | - | {rss_cell} | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torchrun")
    parser.add_argument("--rallypoint")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torchrun = resolve("torchrun", args.torchrun)
    rallypoint = resolve("rallypoint", args.rallypoint)
    print("[crash to restarted workers past import torch]", file=sys.stderr, flush=True)
    samples = bench_crash(variants(torchrun, rallypoint), args.runs)
    print("[standby memory]", file=sys.stderr, flush=True)
    rss = [mib for _ in range(max(1, args.runs // 2)) for mib in standby_rss_once(rallypoint)]
    print(table(samples, rss))
    if args.json:
        Path(args.json).write_text(json.dumps({"crash": samples, "standby_rss_mib": rss}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
