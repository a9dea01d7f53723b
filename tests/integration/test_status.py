"""``rallypoint status`` from another process while a 2-rank job runs (a real agent and store).

The job runs under a c10d rendezvous (one node of at most two) with a secret, so both sources are
asked: the agent's socket in the run folder (same node) and the rendezvous
store (any node). Neither needs torch.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rallypoint.agent.status import SUN_PATH_MAX
from tests.conftest import WORKERS, launcher_env, rallypoint
from tests.harness import wait_until
from tests.multinode.agents import free_port, start_agent

pytestmark = [pytest.mark.integration]

SCRIPT = WORKERS / "status_idle.py"
IDLE_LINE = next(i for i, x in enumerate(SCRIPT.read_text().splitlines(), 1) if "time.sleep" in x)
SECRET = "s3cret-for-status"


@pytest.fixture
def job(mark: str, tmp_path: Path) -> Iterator[tuple[int, Path, dict[str, str]]]:
    # a deep --log-dir: the run folder's status.sock is longer than a unix address holds
    port, logs = free_port(), tmp_path / ("deep-folder-" * 8) / "logs"
    env = launcher_env(mark, RALLYPOINT_SECRET=SECRET, IDLE_SECONDS="120")
    args = [
        "--nnodes=1:2",  # a store, not the single-node rendezvous
        "--rdzv-conf=last_call_timeout=1",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=status-job",
        f"--log-dir={logs}",
        "--stack-period=1",
        "--tee=3",
        str(SCRIPT),
    ]
    agent = start_agent(args, env, tmp_path / "agent")
    try:
        yield port, logs, env
    finally:
        agent.terminate()
        agent.wait(30)


def status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return rallypoint(["status", *args], env, timeout=60)


def shown_once(env: dict[str, str], wanted: tuple[str, ...], what: str, *args: str) -> str:
    """The output of the first ``rallypoint status ARGS`` that succeeds and shows all ``wanted``."""
    seen: list[str] = []

    def shows() -> bool:
        done = status(env, *args)
        seen.append(done.stdout)
        return done.returncode == 0 and all(w in done.stdout for w in wanted)

    wait_until(shows, timeout=60, what=what)
    return seen[-1]


def test_status_stacks_from_another_process_on_the_same_node(
    job: tuple[int, Path, dict[str, str]],
) -> None:
    _, logs, env = job
    where = f'File "{SCRIPT}", line {IDLE_LINE} in idle'

    text = shown_once(
        env, (where, "ranks 0, 1:"), "both ranks' stacks", "--stacks", f"--log-dir={logs}"
    )
    print(text)
    [sock] = logs.glob("*/status.sock")
    assert len(str(sock)) > SUN_PATH_MAX  # reached all the same
    assert "round 0, 1 members, restarts 0" in text
    assert "rank 0 idling" in text  # each rank's last output
    assert "rank 1 idling" in text
    assert "ranks 0, 1:" in text  # one stack, both ranks
    assert text.count(where) == 1
    data = json.loads(status(env, "--json", "--stacks", f"--log-dir={logs}").stdout)
    assert [r["rank"] for r in data[0]["ranks"]] == [0, 1]
    assert all(where in r["stack"] and r["state"] == "running" for r in data[0]["ranks"])


def test_status_shows_the_standbys_and_their_memory(
    job: tuple[int, Path, dict[str, str]],
) -> None:
    """With a restart possible (1:2 nodes) each local rank has a standby, and status shows it.

    The first standbys start during the rendezvous and become the first workers; the ones
    shown once both ranks run are the next attempt's.
    """
    _, logs, env = job
    wanted = ("rank 1 (node", "standby local rank 0: pid", "standby local rank 1: pid")
    text = shown_once(env, wanted, "both ranks and both standbys", f"--log-dir={logs}")
    print(text)
    data = json.loads(status(env, "--json", f"--log-dir={logs}").stdout)
    standbys = data[0]["standbys"]
    assert [s["local_rank"] for s in standbys] == [0, 1]
    assert all(s["rss_kib"] > 1024 for s in standbys), standbys  # a live interpreter's memory
    worker_pids = {r["pid"] for r in data[0]["ranks"]}
    assert not worker_pids & {s["pid"] for s in standbys}  # standbys are not the workers


def test_status_from_the_store_and_a_wrong_secret_is_refused_in_one_line(
    job: tuple[int, Path, dict[str, str]],
) -> None:
    port, _, env = job
    remote = ("--stacks", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=status-job")
    where = f'File "{SCRIPT}", line {IDLE_LINE} in idle'

    text = shown_once(env, (where, "ranks 0, 1:"), "both ranks' digests in the store", *remote)
    print(text)
    assert "rank 0 (node" in text
    assert "rank 1 (node" in text
    assert "ranks 0, 1:" in text
    refused = status({**env, "RALLYPOINT_SECRET": "wrong"}, *remote)
    assert refused.returncode == 1
    assert refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith("rallypoint: error: status: the rendezvous store at 127.0.0.1:")
    assert "Traceback" not in refused.stderr


def test_status_py_and_a_script_named_status_are_still_launched(mark: str, tmp_path: Path) -> None:
    for name in ("status.py", "status"):
        (tmp_path / name).write_text(f"print('ran {name}')\n")
        ran = rallypoint([name], launcher_env(mark), cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert f"ran {name}" in ran.stdout
    nothing = rallypoint(["status", f"--log-dir={tmp_path / 'none'}"], launcher_env(mark))
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("rallypoint: error: status: no running job found")
