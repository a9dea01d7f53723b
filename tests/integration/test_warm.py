"""Warm restarts through the launcher: standbys take over restarted workers, exactly.

Each test runs ``python -m rallypoint`` as a user would. Standby processes are
found by their command line (the bootstrap's ``standby`` mode) among the
processes carrying the test's mark.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rallypoint.workers.command import BOOTSTRAP
from tests.conftest import REPO, WORKERS, launcher_env, marked_pids, rallypoint, start_rallypoint
from tests.harness import wait_until

pytestmark = pytest.mark.integration


def standby_pids(mark: str) -> list[int]:
    """Marked processes that are waiting standbys."""
    found = []
    for pid in marked_pids(mark):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[2:4] == [BOOTSTRAP.encode(), b"standby"]:
            found.append(pid)
    return found


def wait_for_standbys(mark: str, count: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while len(found := standby_pids(mark)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _started(args: list[str], mark: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = launcher_env(mark, PID_DIR=str(tmp_path))
    return start_rallypoint(["--standalone", *args], env)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


@pytest.mark.parametrize(
    ("flags", "program", "expected"),
    [
        (["--max-restarts=1", "--warm=json"], [str(WORKERS / "sleeper.py")], 2),
        (["--max-restarts=1", "--warm=off"], [str(WORKERS / "sleeper.py")], 0),
        (["--max-restarts=1", "--warm=json", "--no-python"], ["sleep", "30"], 0),
        (["--warm=json"], [str(WORKERS / "sleeper.py")], 0),  # no restart can come
    ],
    ids=["on", "off", "no-python", "no-restart-left"],
)
def test_who_gets_standbys(
    flags: list[str], program: list[str], expected: int, mark: str, tmp_path: Path
) -> None:
    proc = _started(["--nproc-per-node=2", *flags, *program], mark, tmp_path)
    try:
        found = wait_for_standbys(mark, max(expected, 1), 3.0 if expected else 2.0)
        assert len(found) == expected
    finally:
        _stop(proc)
    assert not standby_pids(mark)


def test_sigkill_of_the_agent_leaves_no_standby(mark: str, tmp_path: Path) -> None:
    args = ["--nproc-per-node=2", "--max-restarts=1", "--warm=json", str(WORKERS / "sleeper.py")]
    proc = _started(args, mark, tmp_path)
    try:
        assert len(wait_for_standbys(mark, 2, 10.0)) == 2
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    # the mark fixture fails the test if a worker or standby outlives it


def _restarted_view(flags: list[str], mark: str, cwd: Path) -> dict[str, object]:
    env = launcher_env(mark)
    done = rallypoint(["--standalone", "--max-restarts=1", *flags], env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("{")]
    view: dict[str, object] = json.loads(line)
    return view


@pytest.mark.parametrize(
    "target",
    [
        [str(WORKERS / "warm_argv.py"), "a", "$$b"],
        ["tests/workers/warm_argv.py", "relative"],
        ["-m", "tests.workers.warm_argv", "m"],
        ["--run-path", str(WORKERS / "warm_argv.py"), "rp"],
    ],
    ids=["script", "relative-script", "module", "run-path"],
)
def test_warm_and_cold_workers_see_the_same(target: list[str], mark: str) -> None:
    cold = _restarted_view(["--warm=off", *target], mark, REPO)
    warm = _restarted_view(["--warm=xml.dom.minidom", *target], mark, REPO)
    assert cold.pop("preloaded") == {"xml.dom.minidom": False, "torch": False}
    assert warm.pop("preloaded") == {"xml.dom.minidom": True, "torch": False}
    assert warm == cold


WARM_BOUND = 0.1  # s from the crash being seen to the restarted workers past `import torch`


@pytest.mark.torch
def test_gloo_job_restarts_warm(mark: str, tmp_path: Path) -> None:
    args = ["--standalone", "--nproc-per-node=2", "--max-restarts=1", f"--log-dir={tmp_path}"]
    job = [str(WORKERS / "warm_gloo.py"), str(tmp_path)]
    done = rallypoint([*args, *job], launcher_env(mark))
    assert done.returncode == 0, done.stderr
    (events,) = tmp_path.glob("*/events.jsonl")
    history = list(map(json.loads, events.read_text().splitlines()))
    started = [e for e in history if e["kind"] == "worker_started"]
    seen = next(
        e["time"] for e in history if e["kind"] == "worker_exited" and e["exit"] == "exit 1"
    )
    assert [(e["attempt"], e["warm"]) for e in started] == [(0, False)] * 2 + [(1, True)] * 2
    resident = [e["standby_kib"] / 1024 for e in started[2:]]
    print(f"standbys' resident memory at the hand-over: {resident} MiB; ", end="")
    assert min(resident) > 50  # torch is loaded in them
    crash = float((tmp_path / "crash").read_text())
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for record in records:
        assert (record["sum"], record["world"]) == (3.0, 2)  # the right result, at world 2
        assert record["cuda_initialized"] is False  # the standby never touched the accelerator
    after_import = max(r["imported"] for r in records) - crash
    after_init = max(r["joined"] for r in records) - crash
    after_seen = max(r["imported"] for r in records) - seen
    print(f"crash to past `import torch`: {after_import * 1000:.0f} ms ", end="")
    print(f"(from the crash being seen: {after_seen * 1000:.0f} ms); ", end="")
    print(f"to past init_process_group: {after_init * 1000:.0f} ms")
    assert after_seen < WARM_BOUND, "far more than a warm hand-over takes"


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_standbys_start_after_the_workers_and_import_at_lower_priority(
    mark: str, tmp_path: Path
) -> None:
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(2)\n")
    path = f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"
    env = launcher_env(mark, PID_DIR=str(tmp_path), PYTHONPATH=path)
    args = ["--standalone", "--nproc-per-node=2", "--max-restarts=1", "--warm=slow_import"]
    proc = start_rallypoint([*args, str(WORKERS / "sleeper.py")], env)
    try:
        standbys = wait_for_standbys(mark, 2, 10.0)
        wait_until(lambda: len(list(tmp_path.glob("worker_*"))) == 2, 30, "the workers")
        workers = [int(p.read_text().split()[0]) for p in tmp_path.glob("worker_*")]
        # field 19 of /proc/<pid>/stat is the nice value, 21 the start time (after the name)
        nice = lambda: {_stat(pid)[16] for pid in standbys}  # noqa: E731
        wait_until(lambda: nice() == {"10"}, 20, "the standbys importing at nice 10")
        assert min(int(_stat(p)[19]) for p in standbys) >= max(int(_stat(p)[19]) for p in workers)
        wait_until(lambda: nice() == {"0"}, 10, "the priority back once imported")
    finally:
        _stop(proc)


def test_a_restart_starts_cold_while_its_standby_imports_and_warm_once_it_is_done(
    mark: str, tmp_path: Path
) -> None:
    """A crash before the standby's imports are done restarts cold, at once; the standby waits on.

    Attempt 0 crashes at once, long before ``slow_import`` (8 s) is imported: attempt 1
    starts cold without waiting for it. It then waits until the standby says it is ready
    and crashes: attempt 2 is that standby, warm.
    """
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(8)\n")
    path = f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"
    env = launcher_env(mark, PID_DIR=str(tmp_path), PYTHONPATH=path)
    args = ["--standalone", "--max-restarts=2", "--warm=slow_import"]
    done = rallypoint([*args, str(WORKERS / "warm_late.py")], env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "attempts.jsonl").read_text().splitlines()
    first, cold, warm = (json.loads(line) for line in lines)
    assert [a["attempt"] for a in (first, cold, warm)] == [0, 1, 2]
    assert (first["warm"], cold["warm"], warm["warm"]) == (False, False, True)
    assert cold["started"] - first["started"] < 6.0, "the restart waited for the imports"
    assert json.loads((tmp_path / "standbys.json").read_text()) == [warm["pid"]]


def fails_once_then_reports() -> tuple[str, bool]:
    """A callable for the API: the first attempt fails; the next says if it ran warm."""
    import sys

    from tests.workers.standbys_ready import wait_until_ready

    restart = os.environ["TORCHELASTIC_RESTART_COUNT"]
    if restart == "0":
        if "xml.dom.minidom" in sys.modules:  # a single node's first workers start cold
            return restart, True
        wait_until_ready()
        raise RuntimeError("first attempt")
    return restart, "xml.dom.minidom" in sys.modules


def test_api_callables_restart_warm_and_programs_never_get_a_standby() -> None:
    from rallypoint import LaunchConfig, elastic_launch, launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=2,
        max_restarts=1,
        warm_modules=("xml.dom.minidom",),
    )
    assert launch(config, fails_once_then_reports) == {0: ("1", True), 1: ("1", True)}
    assert elastic_launch(config, "/bin/true")() == {0: None, 1: None}


def _terminal_view(warm: str, mark: str) -> dict[str, object]:
    from tests.terminal import Terminal

    term = Terminal(rows=33, columns=117)
    try:
        args = ["-m", "rallypoint", "--standalone", "--max-restarts=1", warm]
        term.start([*args, str(WORKERS / "warm_tty.py")], launcher_env(mark))
        assert term.finish(120) == 0, term.screen().decode(errors="replace")
        (line,) = [x for x in term.screen().splitlines() if x.startswith(b"VIEW ")]
        view: dict[str, object] = json.loads(line[5:])
        return view
    finally:
        term.close()


def test_on_a_terminal_a_warm_worker_sees_what_a_cold_one_sees(mark: str) -> None:
    cold = _terminal_view("--warm=off", mark)
    warm = _terminal_view("--warm=xml.dom.minidom", mark)
    assert (cold.pop("preloaded"), warm.pop("preloaded")) == (False, True)
    assert warm == cold
    assert cold["stderr_size"] == [117, 33]  # stderr is a pseudo-terminal of the user's size


def test_tee_and_log_files_of_a_warm_attempt(mark: str, tmp_path: Path) -> None:
    args = ["--standalone", "--nproc-per-node=2", "--max-restarts=1", "--warm=xml.dom.minidom"]
    args += ["--tee=3", f"--log-dir={tmp_path}", str(WORKERS / "warm_argv.py"), "x"]
    done = rallypoint(args, launcher_env(mark), cwd=REPO)
    assert done.returncode == 0, done.stderr
    for rank in (0, 1):
        (shown,) = [x for x in done.stdout.splitlines() if x.startswith(f"[default{rank}]:{{")]
        (log,) = tmp_path.glob(f"*/attempt_1/{rank}/stdout.log")
        assert log.read_text() == shown.removeprefix(f"[default{rank}]:") + "\n"
        assert json.loads(log.read_text())["preloaded"]["xml.dom.minidom"] is True
