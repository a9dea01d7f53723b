"""Several agents on loopback addresses run one job together (real gloo workers)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.compat._helpers import SCRIPTS as COMPAT_SCRIPTS
from tests.conftest import launcher_env
from tests.harness import wait_until
from tests.multinode.agents import (
    SCRIPTS,
    c10d,
    finish,
    free_port,
    read_lines,
    start_agent,
    wait_listening,
    wait_standbys_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.multinode, pytest.mark.torch]


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*_*.json"))]


@pytest.mark.parametrize("nprocs", [(1, 1), (1, 2, 3)], ids=["2x1", "1+2+3"])
def test_agents_all_reduce_with_torchruns_ranks(
    mark: str, tmp_path: Path, nprocs: tuple[int, ...]
) -> None:
    port, env = free_port(), launcher_env(mark, OUT_DIR=str(tmp_path))
    n = len(nprocs)
    agents = []
    for i, nproc in enumerate(nprocs):
        args = c10d(str(n), port, f"127.0.0.{i + 1}", nproc, str(SCRIPTS / "allreduce.py"))
        agents.append(start_agent(args, env, tmp_path / f"agent{i}"))
        if i == 0:
            wait_listening("127.0.0.1", port)
    assert finish(agents, 120) == [0] * n, (tmp_path / "agent0.err").read_text()
    seen = results(tmp_path)
    world = sum(nprocs)
    assert sorted(int(r["RANK"]) for r in seen) == list(range(world))
    assert {r["sum"] for r in seen} == {world * (world + 1) / 2}
    # torchrun's layout: group ranks by sorted address, each node a contiguous block
    base = 0
    for group, nproc in enumerate(nprocs):
        mine = sorted(
            (r for r in seen if r["GROUP_RANK"] == str(group)), key=lambda r: int(r["LOCAL_RANK"])
        )
        assert [int(r["RANK"]) for r in mine] == list(range(base, base + nproc))
        assert {r["LOCAL_WORLD_SIZE"] for r in mine} == {str(nproc)}
        base += nproc
    assert {(r["WORLD_SIZE"], r["GROUP_WORLD_SIZE"], r["ROLE_WORLD_SIZE"]) for r in seen} == {
        (str(world), str(n), str(world))
    }
    assert {r["MASTER_ADDR"] for r in seen} == {"127.0.0.1"}


@pytest.mark.parametrize("method", ["env", "tcp"])
def test_the_agents_store_serves_8_gloo_workers_on_two_agents(
    mark: str, tmp_path: Path, method: str
) -> None:
    """TCPStore(is_master=False) before init_process_group, 4 + 4 workers (as torchrun)."""
    port, env = free_port(), launcher_env(mark)
    script = [str(COMPAT_SCRIPTS / "agent_store.py"), method]
    agents = []
    for i in range(2):
        args = c10d("2", port, f"127.0.0.{i + 1}", 4, *script)
        agents.append(start_agent(args, env, tmp_path / f"agent{i}"))
        if i == 0:
            wait_listening("127.0.0.1", port)
    assert finish(agents, 240) == [0, 0], (tmp_path / "agent1.err").read_text()
    lines = [
        json.loads(line)
        for i in range(2)
        for line in (tmp_path / f"agent{i}.out").read_text().splitlines()
        if line.startswith("{")
    ]
    assert sorted(line["rank"] for line in lines) == list(range(8))
    assert {(tuple(line["seen"]), line["sum"]) for line in lines} == {(("0:8",) * 8, 28.0)}


def test_static_rendezvous_with_node_ranks(mark: str, tmp_path: Path) -> None:
    port, env = free_port(), launcher_env(mark, OUT_DIR=str(tmp_path))
    common = [
        "--nnodes=2",
        "--nproc-per-node=2",
        "--rdzv-backend=static",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
    ]
    second = start_agent(
        [*common, "--node-rank=1", "--local-addr=127.0.0.2", str(SCRIPTS / "allreduce.py")],
        env,
        tmp_path / "agent1",
    )
    first = start_agent(
        [*common, "--node-rank=0", str(SCRIPTS / "allreduce.py")], env, tmp_path / "agent0"
    )
    assert finish([first, second], 120) == [0, 0], (tmp_path / "agent1.err").read_text()
    seen = results(tmp_path)
    assert {(r["GROUP_RANK"], r["RANK"]) for r in seen} == {
        ("0", "0"),
        ("0", "1"),
        ("1", "2"),
        ("1", "3"),
    }
    assert {r["sum"] for r in seen} == {10.0}
    assert {r["MASTER_ADDR"] for r in seen} == {"127.0.0.1"}
    # as torchrun: the workers' store shares --master-port with the agents' rendezvous
    assert {r["MASTER_PORT"] for r in seen} == {str(port)}


def test_late_node_scales_up_without_spending_a_restart(mark: str, tmp_path: Path) -> None:
    port = free_port()
    env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS="40")
    script = str(SCRIPTS / "elastic.py")
    conf = "--rdzv-conf=last_call_timeout=1"
    first = start_agent(c10d("1:2", port, "127.0.0.1", 1, conf, script), env, tmp_path / "a0")
    wait_until(lambda: read_lines(tmp_path / "stores.jsonl"), 60, "the first worker's store mark")
    second = start_agent(c10d("1:2", port, "127.0.0.2", 1, conf, script), env, tmp_path / "a1")
    assert finish([first, second], 120) == [0, 0], (tmp_path / "a0.err").read_text()
    starts = read_lines(tmp_path / "starts.jsonl")
    assert starts[0]["WORLD_SIZE"] == "1"
    assert {s["WORLD_SIZE"] for s in starts[1:]} == {"2"}
    assert {s["TORCHELASTIC_RESTART_COUNT"] for s in starts} == {"0"}
    assert "waiting to join" in (tmp_path / "a0.err").read_text()
    finished = read_lines(tmp_path / "finished.jsonl")
    assert sorted(f["RANK"] for f in finished) == ["0", "1"]
    assert_no_key_leaked(tmp_path, {"1", "2"})


def assert_no_key_leaked(out: Path, worlds: set[str]) -> None:
    """Every attempt's workers found only their own world's marks in the agent's store."""
    stores = read_lines(out / "stores.jsonl")
    assert {s["WORLD_SIZE"] for s in stores} == worlds
    assert [s for s in stores if s["leaked"]] == []


def test_sigkill_of_an_agent_shrinks_the_job(mark: str, tmp_path: Path) -> None:
    port = free_port()
    env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS="60")
    script = str(SCRIPTS / "elastic.py")
    agents = []
    for i in range(3):
        args = c10d("1:3", port, f"127.0.0.{i + 1}", 1, "--rdzv-conf=last_call_timeout=2", script)
        agents.append(start_agent(args, env, tmp_path / f"a{i}"))
        if i == 0:
            wait_listening("127.0.0.1", port)
    wait_until(lambda: len(read_lines(tmp_path / "stores.jsonl")) == 3, 60, "three store marks")
    os.kill(agents[2].pid, signal.SIGKILL)
    killed_at = time.time()
    assert finish(agents[:2], 120) == [0, 0], (tmp_path / "a0.err").read_text()
    agents[2].wait()
    restarted = [s for s in read_lines(tmp_path / "starts.jsonl") if s["WORLD_SIZE"] == "2"]
    assert len(restarted) == 2
    assert all(s["TORCHELASTIC_RESTART_COUNT"] == "0" for s in restarted)
    assert_no_key_leaked(tmp_path, {"3", "2"})
    delay = min(float(s["time"]) for s in restarted) - killed_at
    assert delay < 10, f"survivors restarted {delay:.2f} s after the kill"
    (tmp_path / "kill_to_restart.txt").write_text(f"{delay:.3f}\n")


def test_wrong_secret_and_wrong_run_id_are_refused_on_both_sides(mark: str, tmp_path: Path) -> None:
    port = free_port()
    env = launcher_env(mark, OUT_DIR=str(tmp_path), RALLYPOINT_SECRET="right")
    script = str(SCRIPTS / "allreduce.py")
    host = start_agent(c10d("2", port, "127.0.0.1", 1, script), env, tmp_path / "host")
    wait_listening("127.0.0.1", port)
    wrong = start_agent(
        c10d("2", port, "127.0.0.2", 1, script),
        {**env, "RALLYPOINT_SECRET": "wrong"},
        tmp_path / "wrong",
    )
    other = [
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--local-addr=127.0.0.3",
        "--rdzv-id=other",
        script,
    ]
    stranger = start_agent(other, env, tmp_path / "stranger")
    assert finish([wrong, stranger], 60) == [1, 1]
    wrong_err = (tmp_path / "wrong.err").read_text()
    assert "refused this node" in wrong_err
    assert "secret" in wrong_err
    assert "does not match" in (tmp_path / "stranger.err").read_text()
    good = start_agent(c10d("2", port, "127.0.0.2", 1, script), env, tmp_path / "good")
    assert finish([host, good], 120) == [0, 0], (tmp_path / "host.err").read_text()
    assert "store refused" in (tmp_path / "host.err").read_text()  # the host says so too
    assert {r["sum"] for r in results(tmp_path)} == {3.0}


def test_waiting_is_visible_and_the_join_timeout_is_one_line(mark: str, tmp_path: Path) -> None:
    port = free_port()
    args = c10d(
        "2:3", port, "127.0.0.1", 1, "--rdzv-conf=join_timeout=7", str(SCRIPTS / "allreduce.py")
    )
    alone = start_agent(args, launcher_env(mark, OUT_DIR=str(tmp_path)), tmp_path / "alone")
    assert finish([alone], 60) == [1]
    err = (tmp_path / "alone.err").read_text().splitlines()
    assert any("waiting for round 0 to form: 1 of 2:3 nodes joined" in line for line in err)
    assert err[-1].startswith("rallypoint: error: waiting for round 0 to form: 1 of 2:3")
    assert err[-1].endswith("gave up after 7 s")
    assert not any("Traceback" in line for line in err)


REJOIN_BOUND = 5.0  # warm restarts: SIGKILL to both survivors past init_process_group, s


def test_survivors_of_a_killed_agent_rejoin_at_world_2_warm(mark: str, tmp_path: Path) -> None:
    port = free_port()
    env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS="100")
    script = str(SCRIPTS / "elastic.py")
    conf = "--rdzv-conf=last_call_timeout=2"
    agents = []
    for i in range(3):
        logs = f"--log-dir={tmp_path / 'logs'}"
        args = c10d("1:3", port, f"127.0.0.{i + 1}", 1, conf, "--warm=torch", logs, script)
        agents.append(start_agent(args, env, tmp_path / f"a{i}"))
        if i == 0:
            wait_listening("127.0.0.1", port)
    wait_until(lambda: len(read_lines(tmp_path / "joined.jsonl")) == 3, 90, "three workers")
    wait_standbys_ready(env, tmp_path / "logs", 3, 90)  # a restart then takes them
    os.kill(agents[2].pid, signal.SIGKILL)  # a non-host agent: the store lives in agent 0
    killed_at = time.time()
    assert finish(agents[:2], 120) == [0, 0], (tmp_path / "a0.err").read_text()
    agents[2].wait()
    joined = read_lines(tmp_path / "joined.jsonl")
    first = [j for j in joined if j["WORLD_SIZE"] == "3"]
    assert [j["preloaded"] for j in first] == [True] * 3, "standbys imported during the rendezvous"
    rejoined = [j for j in joined if j["WORLD_SIZE"] == "2"]
    assert len(rejoined) == 2
    assert all(j["preloaded"] for j in rejoined), "the survivors' new workers were standbys"
    delay = max(float(j["time"]) for j in rejoined) - killed_at
    print(f"SIGKILL of an agent to both survivors past init_process_group: {delay:.3f} s")
    (tmp_path / "kill_to_rejoin.txt").write_text(f"{delay:.3f}\n")
    assert delay < REJOIN_BOUND
