"""Rendezvous benchmarks: rallypoint against the real torchrun, side by side.

Stdlib only. Three measures (see bench/README.md, section "Rendezvous"):

1. rendezvous time of 2, 4 and 8 real agents on loopback (c10d, fixed --nnodes);
2. SIGKILL of one non-host agent (3 agents, --nnodes=1:3) to the first worker
   restarted at world size 2 on the survivors;
3. rendezvous time of 100, 1,000 and 10,000 simulated nodes against one
   rallypoint store (rallypoint only: real ``StoreRendezvous`` objects).

Usage: ``python bench/rendezvous.py [--quick] [--json PATH] [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "workers"
LAUNCHERS = ("torchrun", "rallypoint")
MEASURES = ("agents", "kill", "scale")
AGENT_COUNTS = (2, 4, 8)
SCALE_SIZES = (100, 1_000, 10_000)
SCALE_PROCS = 4
AGENTS_CAP_S = 120.0  # one real-agent rendezvous
KILL_CAP_S = 90.0  # kill to restarted worker
SCALE_CAP_S = 120.0  # one simulated rendezvous
SCALE_TARGET = (10_000, 10.0)  # 10,000 nodes in < 10 s
BASE_ENV = {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class Measure:
    """Samples of one measure: seconds, or None for a run that did not finish in time."""

    name: str
    cap_s: float
    samples: dict[str, list[float | None]] = field(default_factory=dict)
    note: str = ""

    def median(self, launcher: str) -> float | None:
        """Median of the runs, a capped run counting as infinite; None if that is the median."""
        runs = self.samples.get(launcher, [])
        if not runs:
            return None
        middle = statistics.median(float("inf") if s is None else s for s in runs)
        return None if middle == float("inf") else middle


# ---------------------------------------------------------------- setup ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs (3 / 1 / 1)")
    p.add_argument("--json", type=Path, help="write the raw samples here")
    p.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES))
    p.add_argument("--agents", type=int, nargs="+", default=list(AGENT_COUNTS))
    p.add_argument("--sizes", type=int, nargs="+", default=list(SCALE_SIZES))
    p.add_argument("--runs", type=int, help="runs of measure 1 (default 5, quick 3)")
    p.add_argument("--lease-ttl", type=float, default=60.0, help="simulated nodes' lease TTL")
    p.add_argument("--profile", type=Path, help="cProfile the store and one client process")
    p.add_argument("--torchrun", help="torchrun executable (default: next to python)")
    p.add_argument("--rallypoint", help="rallypoint executable (default: next to python)")
    args = p.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 5)
    args.kill_runs = 1 if args.quick else 3
    args.scale_runs = 1 if args.quick else 3
    return args


def resolve(name: str, override: str | None) -> str:
    """Absolute path of a launcher, next to this python first (no pyenv shims)."""
    if override:
        return str(Path(override).resolve())
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found; pass --{name} PATH")
    return found


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def environment(exes: dict[str, str]) -> dict[str, str]:
    torch = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": f"{platform.node()} ({platform.system()} {platform.release()})",
        "cpu": cpu_model(),
        "nproc": f"{len(os.sched_getaffinity(0))} usable / {os.cpu_count()} total",
        "python": platform.python_version(),
        "torch": torch or "?",
        "rallypoint": metadata.version("rallypoint"),
        "load average at start": loadavg(),
        **{f"{name} exe": path for name, path in exes.items()},
    }


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------ processes ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session (its own process group), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | BASE_ENV,
            start_new_session=True,
        )


def marked_pids(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (a run's temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids


def kill_all(procs: list[subprocess.Popen[bytes]], marker: str) -> None:
    """SIGKILL every process group we started, then any straggler naming ``marker``.

    torchrun starts its workers in sessions of their own, so killing the agents'
    groups is not enough: the marker catches those workers too.
    """
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for pid in marked_pids(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def wait_exit(procs: list[subprocess.Popen[bytes]], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


# ------------------------------------------------------ 1. real agents -----


def agent_cmd(exe: str, nnodes: str, port: int, i: int, extra: list[str]) -> list[str]:
    return [
        exe,
        f"--nnodes={nnodes}",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=x",
        f"--local-addr=127.0.0.{i + 1}",
        *extra,
    ]


def stamps(d: Path) -> list[float]:
    values = []
    for f in d.iterdir():
        with contextlib.suppress(OSError, ValueError):
            values.append(float(f.read_text()))
    return values


def agents_once(exe: str, n: int, tmp: Path) -> float | None:
    """Seconds from launching the last of ``n`` agents to every worker's first line."""
    run = Path(tempfile.mkdtemp(prefix=f"agents{n}-", dir=tmp))
    out = run / "stamps"
    out.mkdir()
    port, procs = free_port(), []
    script = [str(WORKERS / "stamp.py"), str(out)]
    try:
        for i in range(n):
            launched = time.time()
            procs.append(spawn(agent_cmd(exe, str(n), port, i, []) + script, run / f"{i}.log"))
        deadline = time.monotonic() + AGENTS_CAP_S
        while len(found := stamps(out)) < n:
            if time.monotonic() > deadline or all(p.poll() is not None for p in procs):
                say(f"  {Path(exe).name} x{n}: no result\n{tail(run / '0.log')}")
                return None
            time.sleep(0.01)
        if not wait_exit(procs, 60):
            say(f"  WARNING: {Path(exe).name} x{n}: agents still up 60 s after their workers")
        return max(found) - launched
    finally:
        kill_all(procs, str(run))


def bench_agents(exes: dict[str, str], counts: list[int], runs: int, tmp: Path) -> list[Measure]:
    measures = []
    for n in counts:
        say(f"[rendezvous, {n} agents]")
        m = Measure(f"rendezvous, {n} real agents", AGENTS_CAP_S, note="last launch -> all workers")
        m.samples = {name: [] for name in exes}
        for i in range(runs):
            for name, exe in exes.items():
                m.samples[name].append(agents_once(exe, n, tmp))
            say(f"  run {i + 1}/{runs}: " + show_samples(m, -1))
        measures.append(m)
    return measures


def show_samples(m: Measure, index: int) -> str:
    return ", ".join(f"{k} {fmt_s(v[index], m.cap_s)}" for k, v in m.samples.items())


# ------------------------------------------------- 2. kill to restart ------


def read_log(path: Path) -> list[dict[str, object]]:
    lines = []
    with contextlib.suppress(OSError):
        for text in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(text))
    return lines


def wait_for(path: Path, ok: object, limit_s: float) -> dict[str, object] | None:
    """The first log line for which ``ok(line)`` holds, polled every 5 ms."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for line in read_log(path):
            if ok(line):  # type: ignore[operator]
                return line
        time.sleep(0.005)
    return None


def ready_at_three(log: Path, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ranks = {
            line["rank"]
            for line in read_log(log)
            if line["event"] == "ready" and line["world_size"] == 3
        }
        if len(ranks) == 3:
            return True
        time.sleep(0.05)
    return False


def listening(port: int, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def kill_once(name: str, exe: str, tmp: Path) -> float | None:
    """Seconds from SIGKILL of a non-host agent to a survivor's worker at world size 2."""
    run = Path(tempfile.mkdtemp(prefix=f"kill-{name}-", dir=tmp))
    log, port, procs = run / "workers.jsonl", free_port(), []
    conf = ["--rdzv-conf=last_call_timeout=2"] if name == "rallypoint" else []
    extra = ["--max-restarts=3", *conf, str(WORKERS / "allreduce.py"), str(log), "60"]
    try:
        procs.append(spawn(agent_cmd(exe, "1:3", port, 0, extra), run / "0.log"))
        if not listening(port, 60):  # agent 0 hosts the store; the others join it
            say(f"  {name}: agent 0 never listened\n{tail(run / '0.log')}")
            return None
        procs += [spawn(agent_cmd(exe, "1:3", port, i, extra), run / f"{i}.log") for i in (1, 2)]
        if not ready_at_three(log, 120):
            say(f"  {name}: the 3 workers never got going\n{tail(run / '2.log')}")
            return None
        time.sleep(0.5)
        killed = time.time()
        os.kill(procs[2].pid, signal.SIGKILL)
        line = wait_for(log, lambda x: restarted(x, killed), KILL_CAP_S)
        return None if line is None else float(line["t"]) - killed  # type: ignore[arg-type]
    finally:
        kill_all(procs, str(run))


def restarted(line: dict[str, object], after: float) -> bool:
    t = line.get("t")
    return line["event"] == "start" and line["world_size"] == 2 and float(t or 0) > after  # type: ignore[arg-type]


def bench_kill(exes: dict[str, str], runs: int, tmp: Path) -> Measure:
    say("[kill-to-restart]")
    m = Measure("SIGKILL non-host agent -> restart at world 2", KILL_CAP_S, note="3 agents")
    m.samples = {name: [] for name in exes}
    for name, exe in exes.items():
        for i in range(1 if name == "torchrun" else runs):
            m.samples[name].append(kill_once(name, exe, tmp))
            say(f"  {name} run {i + 1}: {fmt_s(m.samples[name][-1], KILL_CAP_S)}")
    return m


# ------------------------------------------------- 3. simulated nodes ------


class Lines:
    """The stdout lines of a process, read by a thread, taken with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._queue.put(line)

    def take(self, deadline: float) -> dict[str, object] | None:
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        return dict(json.loads(line))


def py_proc(args: list[str], log: Path) -> subprocess.Popen[str]:
    with log.open("a") as err:
        return subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """SIGTERM (profiles are dumped on it), then SIGKILL what is left."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class ScaleRun:
    """One simulated rendezvous: its time (None if capped) and what it saw."""

    seconds: float | None
    connect_s: float
    detail: str


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


@dataclass(frozen=True)
class ScaleSetup:
    """How to run the simulated nodes."""

    lease_ttl: float
    cap_s: float
    profile: Path | None


def client_args(port: int, n: int, k: int, i: int, setup: ScaleSetup) -> list[str]:
    args = [str(WORKERS / "sim_nodes.py"), f"--port={port}", f"--count={k}", f"--total={n}"]
    args += [f"--index={i}", f"--lease-ttl={setup.lease_ttl}", f"--timeout={setup.cap_s}"]
    prof = setup.profile
    return args + ([f"--profile={prof}/client-{n}.prof"] if prof and i == 0 else [])


def scale_once(n: int, setup: ScaleSetup, tmp: Path) -> ScaleRun:
    """Seconds from the barrier to the last of ``n`` simulated nodes having its result."""
    log = tmp / f"scale-{n}.log"
    server_args = [str(WORKERS / "store_server.py")]
    prof = setup.profile
    server_args += [f"--profile={prof}/server-{n}.prof"] if prof else []
    server = py_proc(server_args, log)
    procs = [server]
    try:
        port = int(Lines(server).take(time.monotonic() + 30)["port"])  # type: ignore[index,arg-type]
        counts = [k for k in split(n, SCALE_PROCS) if k]
        procs += [py_proc(client_args(port, n, k, i, setup), log) for i, k in enumerate(counts)]
        return barrier_and_collect(procs[1:], n, setup.cap_s, log)
    finally:
        stop(procs)


def barrier_and_collect(
    clients: list[subprocess.Popen[str]], n: int, cap_s: float, log: Path
) -> ScaleRun:
    lines = [Lines(c) for c in clients]
    ready = [line.take(time.monotonic() + cap_s) for line in lines]
    if any(r is None for r in ready):
        return ScaleRun(None, cap_s, f"clients could not connect\n{tail(log)}")
    connect_s = max(float(r["ready"]) for r in ready if r)  # type: ignore[arg-type]
    began = time.time()
    for c in clients:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    deadline = time.monotonic() + cap_s
    results = [line.take(deadline) for line in lines]
    if any(r is None for r in results):
        return ScaleRun(None, connect_s, "timeout")
    return judge([r for r in results if r], n, began, connect_s)


def judge(results: list[dict[str, object]], n: int, began: float, connect_s: float) -> ScaleRun:
    """Check every node got a distinct rank in one round of ``n``; time the last one."""
    ranks = sorted(r for res in results for r in res["ranks"])  # type: ignore[attr-defined]
    worlds = {w for res in results for w in res["worlds"]}  # type: ignore[attr-defined]
    errors: dict[str, int] = {}
    for res in results:
        for k, v in res["errors"].items():  # type: ignore[attr-defined]
            errors[k] = errors.get(k, 0) + v
    if ranks != list(range(n)) or worlds != {n}:
        first = next((res["first_error"] for res in results if res.get("first_error")), None)
        detail = f"failed: worlds {sorted(worlds)}, errors {errors}, first {first}"
        return ScaleRun(None, connect_s, detail)
    last = max(float(res["last"]) for res in results)  # type: ignore[arg-type]
    return ScaleRun(last - began, connect_s, "ok")


def bench_scale(sizes: list[int], runs: int, setup: ScaleSetup, tmp: Path) -> list[Measure]:
    measures = []
    for n in sizes:
        say(f"[simulated rendezvous, {n} nodes]")
        m = Measure(f"rendezvous, {n:,} simulated nodes", setup.cap_s)
        m.samples = {"rallypoint": []}
        notes = []
        for i in range(1 if n >= 10_000 else runs):
            run = scale_once(n, setup, tmp)
            m.samples["rallypoint"].append(run.seconds)
            notes.append(f"connect {run.connect_s:.1f} s, {run.detail}")
            say(f"  run {i + 1}: {fmt_s(run.seconds, setup.cap_s)} ({notes[-1]})")
        m.note = "; ".join(notes)
        measures.append(m)
    return measures


# --------------------------------------------------------------- report ----


def fmt_s(value: float | None, cap: float) -> str:
    if value is None or value == float("inf"):
        return f"> {cap:.0f} s"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def ratio(t: float | None, r: float | None, cap: float) -> str:
    if r is None:
        return "n/a"
    if t is None:
        return f"> {cap / r:.0f}x"
    return f"{t / r:.1f}x"


def table(measures: list[Measure]) -> str:
    rows = [
        "| measure | torchrun | rallypoint | ratio (torchrun/rallypoint) |",
        "|---|---:|---:|---:|",
    ]
    for m in measures:
        r = m.median("rallypoint")
        if "torchrun" not in m.samples:
            rows.append(f"| {m.name} | not run | {fmt_s(r, m.cap_s)} | n/a |")
            continue
        t = m.median("torchrun")
        rows.append(
            f"| {m.name} | {fmt_s(t, m.cap_s)} | {fmt_s(r, m.cap_s)} | {ratio(t, r, m.cap_s)} |"
        )
    return "\n".join(rows)


def target_line(measures: list[Measure]) -> str:
    n, goal = SCALE_TARGET
    for m in measures:
        if m.name == f"rendezvous, {n:,} simulated nodes":
            r = m.median("rallypoint")
            state = "met" if r is not None and r < goal else "MISSED"
            return f"- {n:,} simulated nodes, target < {goal:.0f} s: {state} ({fmt_s(r, m.cap_s)})"
    return ""


def write_json(path: Path, env: dict[str, str], measures: list[Measure]) -> None:
    data = {
        "environment": env,
        "measures": [
            {
                "name": m.name,
                "unit": "s",
                "cap_s": m.cap_s,
                "note": m.note,
                "samples": m.samples,
                "median": {k: m.median(k) for k in m.samples},
            }
            for m in measures
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def run_all(args: argparse.Namespace, exes: dict[str, str], tmp: Path) -> list[Measure]:
    measures: list[Measure] = []
    if "agents" in args.only:
        measures += bench_agents(exes, args.agents, args.runs, tmp)
    if "kill" in args.only:
        measures.append(bench_kill(exes, args.kill_runs, tmp))
    if "scale" in args.only:
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        prof = args.profile.resolve() if args.profile else None
        setup = ScaleSetup(args.lease_ttl, SCALE_CAP_S, prof)
        measures += bench_scale(args.sizes, args.scale_runs, setup, tmp)
    return measures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exes = {name: resolve(name, getattr(args, name)) for name in LAUNCHERS}
    env = environment(exes)
    print("## Environment\n\n" + "\n".join(f"- {k}: {v}" for k, v in env.items()) + "\n")
    with tempfile.TemporaryDirectory(prefix="rp-rdzv-") as tmp:
        measures = run_all(args, exes, Path(tmp))
    print("## Results\n\n" + table(measures) + "\n")
    for m in measures:
        print(f"- {m.name}: samples " + show_all(m) + (f"; {m.note}" if m.note else ""))
    print(target_line(measures) + f"\n- load average at end: {loadavg()}")
    if args.json:
        write_json(args.json, env, measures)
        print(f"\nraw samples: {args.json}")
    return 0


def show_all(m: Measure) -> str:
    return "; ".join(
        f"{k} [{', '.join(fmt_s(s, m.cap_s) for s in v)}]" for k, v in m.samples.items()
    )


if __name__ == "__main__":
    sys.exit(main())
