"""Benchmark rallypoint against the real torchrun, side by side, in one run.

Stdlib only. Shells out to hyperfine (launch time) and to both launchers
(crash-to-restart, agent memory). See bench/README.md for what each number
means. Usage: ``python bench/run.py [--runs N | --quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "workers"
LAUNCHERS = ("torchrun", "rallypoint")
TARGETS = {"launch noop, 1 worker": 20.0, "launch noop, 4 workers": 20.0, "crash-to-restart": 5.0}
RUN_TIMEOUT_S = 300.0
HANG_AFTER_S = 60.0  # the memory run's launcher must exit this long after its worker would


@dataclass
class Measure:
    """Raw samples of one measure for both launchers."""

    name: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""

    def median(self, launcher: str) -> float:
        return statistics.median(self.samples[launcher])


# ---------------------------------------------------------------- setup ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs per launcher and measure")
    p.add_argument("--quick", action="store_true", help="3 runs instead of --runs")
    p.add_argument("--json", type=Path, help="write the raw samples here")
    p.add_argument("--torchrun", help="torchrun executable (default: next to python)")
    p.add_argument("--rallypoint", help="rallypoint executable (default: next to python)")
    p.add_argument("--sleep", type=float, default=1.0, help="memory worker sleep, seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 3
    return args


def resolve(name: str, override: str | None) -> str:
    """Absolute path of a launcher, avoiding slow wrappers such as pyenv shims."""
    if override:
        return str(Path(override).resolve())
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found; pass --{name} PATH")
    return found


def output_of(cmd: list[str]) -> str:
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (run.stdout or run.stderr).strip().splitlines()[0] if run.returncode == 0 else "?"


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return models[0] if models else "?"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def environment(exes: dict[str, str]) -> dict[str, str]:
    torch_cmd = [sys.executable, "-c", "import torch; print(torch.__version__)"]
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": f"{platform.node()} ({platform.system()} {platform.release()})",
        "cpu": cpu_model(),
        "nproc": f"{len(os.sched_getaffinity(0))} usable / {os.cpu_count()} total",
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": output_of(torch_cmd),
        "rallypoint": metadata.version("rallypoint"),
        "hyperfine": output_of(["hyperfine", "--version"]),
        "load average at start": loadavg(),
        **{f"{name} exe": path for name, path in exes.items()},
    }


# ---------------------------------------------------------------- launch ---


def hyperfine_supports_no_shell() -> bool:
    text = subprocess.run(["hyperfine", "--help"], capture_output=True, text=True).stdout
    return "--shell=none" in text or "-N," in text


def launch_cmd(exe: str, nproc: int) -> str:
    return f"{exe} --standalone --nproc-per-node={nproc} {WORKERS / 'noop.py'}"


def hyperfine(cmds: dict[str, str], runs: int, out: Path) -> dict[str, list[float]]:
    """Seconds per run of each named command, as measured by hyperfine."""
    cmd = ["hyperfine", "--runs", str(runs), "--warmup", "1", "--style", "basic"]
    cmd += ["-N"] if hyperfine_supports_no_shell() else []
    cmd += ["--export-json", str(out)]
    for name, command in cmds.items():
        cmd += ["--command-name", name, command]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    results = json.loads(out.read_text())["results"]
    return {name: r["times"] for name, r in zip(cmds, results, strict=True)}


def bench_launch(exes: dict[str, str], nproc: int, runs: int, tmp: Path) -> Measure:
    plural = "worker" if nproc == 1 else "workers"
    measure = Measure(f"launch noop, {nproc} {plural}", "ms", note="hyperfine wall time")
    cmds = {name: launch_cmd(exe, nproc) for name, exe in exes.items()}
    secs = hyperfine(cmds, runs, tmp / f"launch-{nproc}.json")
    measure.samples = {name: [s * 1000 for s in times] for name, times in secs.items()}
    return measure


def python_floors(runs: int, tmp: Path) -> dict[str, float]:
    """Median ms of a bare ``python noop.py``: every launch pays it twice (agent, worker)."""
    py, noop = sys.executable, WORKERS / "noop.py"
    cmds = {"python noop.py": f"{py} {noop}", "python -S noop.py": f"{py} -S {noop}"}
    secs = hyperfine(cmds, runs, tmp / "floors.json")
    return {name: statistics.median(times) * 1000 for name, times in secs.items()}


def floor_lines(floors: dict[str, float]) -> list[str]:
    return [f"- floor, `{name}` (no launcher): {ms:.0f} ms median" for name, ms in floors.items()]


# ---------------------------------------------------------------- restart --


def run_checked(cmd: list[str]) -> None:
    run = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_S
    )
    if run.returncode != 0:
        raise RuntimeError(f"{cmd} exited {run.returncode}:\n{run.stderr[-2000:]}")


def crash_once(exe: str) -> float:
    """Seconds from the first worker's crash to the restarted worker's first line."""
    with tempfile.TemporaryDirectory(prefix="rp-crash-") as d:
        script = str(WORKERS / "crash_restart.py")
        run_checked([exe, "--standalone", "--nproc-per-node=1", "--max-restarts=1", script, d])
        crash = float(Path(d, "crash").read_text())
        restart = float(Path(d, "restart").read_text())
    return restart - crash


def interleaved(
    exes: dict[str, str], runs: int, once: Callable[[str], float]
) -> dict[str, list[float]]:
    """One warm-up each, then alternate launchers so drift hits both alike."""
    for exe in exes.values():
        once(exe)
    samples: dict[str, list[float]] = {name: [] for name in exes}
    for i in range(runs):
        for name, exe in exes.items():
            samples[name].append(once(exe))
        print(f"  run {i + 1}/{runs} done", file=sys.stderr)
    return samples


def bench_crash(exes: dict[str, str], runs: int) -> Measure:
    measure = Measure("crash-to-restart", "ms", note="worker timestamps")
    secs = interleaved(exes, runs, crash_once)
    measure.samples = {name: [s * 1000 for s in values] for name, values in secs.items()}
    return measure


# ---------------------------------------------------------------- memory ---


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids, found, todo = children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_worker(pid: int, marker: str) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def sample_tree(pid: int, marker: str, peaks: dict[int, int]) -> None:
    """Record VmHWM of the launcher and of its non-worker descendants."""
    for p in [pid, *descendants(pid)]:
        if p == pid or not is_worker(p, marker):
            peaks[p] = max(peaks.get(p, 0), status_kib(p, "VmHWM"))


def wait_ready(proc: subprocess.Popen[bytes], ready: Path) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"launcher exited ({proc.returncode}) before the worker was ready")
        time.sleep(0.005)


def watch_until_exit(
    proc: subprocess.Popen[bytes], script: str, peaks: dict[int, int], limit_s: float
) -> None:
    """Sample VmHWM every 20 ms until the launcher exits; kill it if it hangs."""
    deadline = time.monotonic() + limit_s
    while proc.poll() is None:
        sample_tree(proc.pid, script, peaks)
        if time.monotonic() > deadline:
            print(
                f"  WARNING: {proc.args!r} still running after {limit_s:.0f} s; killed it",
                file=sys.stderr,
            )
            proc.kill()
            break
        time.sleep(0.02)


def memory_once(exe: str, sleep_s: float) -> tuple[float, float]:
    """(launcher peak RSS, launcher + helpers peak RSS) in MiB, workers excluded."""
    with tempfile.TemporaryDirectory(prefix="rp-mem-") as d:
        ready, script = Path(d, "ready"), str(WORKERS / "sleep.py")
        cmd = [exe, "--standalone", "--nproc-per-node=1", script, str(sleep_s), str(ready)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peaks: dict[int, int] = {}
        try:
            wait_ready(proc, ready)
            watch_until_exit(proc, script, peaks, sleep_s + HANG_AFTER_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return peaks.get(proc.pid, 0) / 1024, sum(peaks.values()) / 1024


def bench_memory(exes: dict[str, str], runs: int, sleep_s: float) -> list[Measure]:
    pairs = interleaved_pairs(exes, runs, sleep_s)
    own = Measure("agent peak RSS, launcher process", "MiB", note="VmHWM, /proc")
    tree = Measure("agent peak RSS, launcher + helpers", "MiB", note="workers excluded")
    own.samples = {name: [a for a, _ in values] for name, values in pairs.items()}
    tree.samples = {name: [b for _, b in values] for name, values in pairs.items()}
    return [own, tree]


def interleaved_pairs(
    exes: dict[str, str], runs: int, sleep_s: float
) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in exes}
    for i in range(runs):
        for name, exe in exes.items():
            samples[name].append(memory_once(exe, sleep_s))
        print(f"  run {i + 1}/{runs} done", file=sys.stderr)
    return samples


# ---------------------------------------------------------------- report ---


def fmt(value: float, unit: str) -> str:
    return f"{value:.1f} {unit}" if unit == "MiB" or value < 100 else f"{value:.0f} {unit}"


def table(measures: list[Measure]) -> str:
    rows = [
        "| measure | torchrun median | rallypoint median | ratio (torchrun/rallypoint) |",
        "|---|---:|---:|---:|",
    ]
    for m in measures:
        t, r = m.median("torchrun"), m.median("rallypoint")
        ratio = f"{t / r:.1f}x" if r > 0 else "n/a"
        rows.append(f"| {m.name} | {fmt(t, m.unit)} | {fmt(r, m.unit)} | {ratio} |")
    return "\n".join(rows)


def verdicts(measures: list[Measure]) -> list[str]:
    lines = []
    for m in measures:
        if m.name in TARGETS:
            ratio, goal = m.median("torchrun") / m.median("rallypoint"), TARGETS[m.name]
            state = "met" if ratio >= goal else f"MISSED (at {ratio / goal:.0%} of the target)"
            lines.append(f"- {m.name}: {ratio:.1f}x, target >= {goal:.0f}x: {state}")
    return lines


def write_json(
    path: Path, env: dict[str, str], floors: dict[str, float], measures: list[Measure]
) -> None:
    data = {
        "environment": env,
        "floors_ms": floors,
        "measures": [
            {
                "name": m.name,
                "unit": m.unit,
                "note": m.note,
                "samples": m.samples,
                "median": {k: m.median(k) for k in m.samples},
            }
            for m in measures
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def compile_rallypoint() -> None:
    """Byte-compile rallypoint as pip did torch: an editable install is not compiled, and
    with PYTHONDONTWRITEBYTECODE set every run would compile its modules again."""
    import rallypoint

    package = str(Path(rallypoint.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("hyperfine") is None:
        sys.exit("hyperfine not found (apt-get install -y hyperfine)")
    exes = {name: resolve(name, getattr(args, name)) for name in LAUNCHERS}
    compile_rallypoint()
    env = environment(exes)
    print("## Environment\n")
    lines = [f"- {k}: {v}" for k, v in env.items()] + [f"- runs: {args.runs}"]
    print("\n".join(lines) + "\n", flush=True)
    measures: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as tmp:
        floors = python_floors(args.runs, Path(tmp))
        for nproc in (1, 4):
            print(f"[launch, {nproc} worker(s)]", file=sys.stderr, flush=True)
            measures.append(bench_launch(exes, nproc, args.runs, Path(tmp)))
    print("[crash-to-restart]", file=sys.stderr, flush=True)
    measures.append(bench_crash(exes, args.runs))
    print("[agent memory]", file=sys.stderr, flush=True)
    measures += bench_memory(exes, args.runs, args.sleep)
    print("## Results\n\n" + table(measures) + "\n\n" + "\n".join(verdicts(measures)))
    print("\n" + "\n".join(floor_lines(floors)) + f"\n- load average at end: {loadavg()}")
    if args.json:
        write_json(args.json, env | {"runs": str(args.runs)}, floors, measures)
        print(f"\nraw samples: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
