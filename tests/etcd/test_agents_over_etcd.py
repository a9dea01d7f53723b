"""rallypoint agents meet through a real etcd (v3 API) and run real gloo workers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import launcher_env
from tests.contract.etcd_servers import EtcdCluster
from tests.etcd.conftest import needs_etcd
from tests.harness import wait_until
from tests.multinode.agents import SCRIPTS, finish, read_lines, start_agent

pytestmark = [pytest.mark.integration, pytest.mark.multinode, pytest.mark.torch, needs_etcd]


def etcd_args(cluster: EtcdCluster, nnodes: str, addr: str, *extra: str) -> list[str]:
    endpoints = ",".join(f"127.0.0.1:{port}" for _, port in cluster.endpoints)
    return [
        f"--nnodes={nnodes}",
        "--nproc-per-node=1",
        "--rdzv-backend=etcd",
        f"--rdzv-endpoint={endpoints}",
        "--rdzv-id=etcdjob",
        f"--local-addr={addr}",
        *extra,
    ]


def all_reduce_results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*_*.json"))]


@pytest.mark.parametrize("agents", [2, 3])
def test_agents_all_reduce_through_etcd(
    etcd: EtcdCluster, mark: str, tmp_path: Path, agents: int
) -> None:
    env = launcher_env(mark, OUT_DIR=str(tmp_path))
    procs = [
        start_agent(
            [*etcd_args(etcd, str(agents), f"127.0.0.{i + 1}"), str(SCRIPTS / "allreduce.py")],
            env,
            tmp_path / f"a{i}",
        )
        for i in range(agents)
    ]
    assert finish(procs, 120) == [0] * agents, (tmp_path / "a0.err").read_text()
    seen = all_reduce_results(tmp_path)
    assert sorted(int(r["RANK"]) for r in seen) == list(range(agents))
    assert {r["sum"] for r in seen} == {agents * (agents + 1) / 2}


def test_killed_agent_lease_lapses_and_survivors_go_on(
    etcd: EtcdCluster, mark: str, tmp_path: Path
) -> None:
    env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS="60")
    conf = "--rdzv-conf=last_call_timeout=2,session_ttl=2,lease_ttl=2"
    # The survivors' workers see the dead peer in gloo at once, before its etcd lease
    # lapses, and fail: that failure spends the one restart; the next round forms at
    # world 2 only once the dead node's lease is gone.
    budget = "--max-restarts=1"
    procs = [
        start_agent(
            [
                *etcd_args(etcd, "1:3", f"127.0.0.{i + 1}", conf, budget),
                str(SCRIPTS / "elastic.py"),
            ],
            env,
            tmp_path / f"a{i}",
        )
        for i in range(3)
    ]
    wait_until(lambda: len(read_lines(tmp_path / "joined.jsonl")) == 3, 90, "three workers")
    os.kill(procs[2].pid, signal.SIGKILL)
    killed_at = time.time()
    assert finish(procs[:2], 120) == [0, 0], (tmp_path / "a0.err").read_text()
    procs[2].wait()
    restarted = [s for s in read_lines(tmp_path / "starts.jsonl") if s["WORLD_SIZE"] == "2"]
    assert len(restarted) == 2
    assert min(float(s["time"]) for s in restarted) - killed_at < 20


def test_job_finishes_when_an_etcd_member_dies(
    etcd3: EtcdCluster, mark: str, tmp_path: Path
) -> None:
    env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS="40")
    procs = [
        start_agent(
            [*etcd_args(etcd3, "3", f"127.0.0.{i + 1}"), str(SCRIPTS / "elastic.py")],
            env,
            tmp_path / f"a{i}",
        )
        for i in range(3)
    ]
    wait_until(lambda: len(read_lines(tmp_path / "starts.jsonl")) == 3, 90, "three workers")
    follower = next(i for i in range(3) if i != etcd3.leader())
    etcd3.kill(follower)
    assert finish(procs, 120) == [0, 0, 0], (tmp_path / "a0.err").read_text()
    assert len(read_lines(tmp_path / "finished.jsonl")) == 3


def test_rendezvous_over_https(
    tls_etcd: EtcdCluster,
    pki: Path,
    mark: str,
    tmp_path: Path,
) -> None:
    env = launcher_env(mark, OUT_DIR=str(tmp_path))
    conf = (
        f"--rdzv-conf=protocol=https,cacert={pki / 'ca.pem'},cert={pki / 'client.pem'},"
        f"key={pki / 'client.key'}"
    )
    procs = [
        start_agent(
            [*etcd_args(tls_etcd, "2", f"127.0.0.{i + 1}", conf), str(SCRIPTS / "allreduce.py")],
            env,
            tmp_path / f"a{i}",
        )
        for i in range(2)
    ]
    assert finish(procs, 120) == [0, 0], (tmp_path / "a0.err").read_text()
    assert {r["sum"] for r in all_reduce_results(tmp_path)} == {3.0}


def test_unreachable_etcd_is_one_clear_line(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark)
    args = [
        "--nnodes=2",
        "--rdzv-backend=etcd",
        "--rdzv-endpoint=127.0.0.1:1,127.0.0.1:2",
        "--rdzv-conf=join_timeout=2",
        str(SCRIPTS / "allreduce.py"),
    ]
    proc = start_agent(args, env, tmp_path / "a")
    assert finish([proc], 60) == [1]
    err = (tmp_path / "a.err").read_text().strip().splitlines()
    assert len(err) == 1, err
    assert "127.0.0.1:1" in err[0]
    assert "127.0.0.1:2" in err[0]
    assert "Traceback" not in err[0]
