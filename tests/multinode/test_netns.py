"""Nodes in network namespaces: an agent killed, a link cut; the others go on."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import launcher_env
from tests.harness import wait_until
from tests.multinode.agents import SCRIPTS, agent_argv, finish, read_lines
from tests.multinode.conftest import MakeLab
from tests.multinode.netns import NetnsLab

pytestmark = [pytest.mark.integration, pytest.mark.multinode, pytest.mark.torch]

PORT = 29555


def start_nodes(
    lab: NetnsLab,
    tmp_path: Path,
    mark: str,
    steps: str,
) -> list[subprocess.Popen[bytes]]:
    endpoint = f"{lab.node(0).addr}:{PORT}"
    agents = []
    for i in range(len(lab)):
        node = lab.node(i)
        env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS=steps, GLOO_SOCKET_IFNAME="eth0")
        args = [
            "--nnodes=1:3",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            "--rdzv-id=netns",
            f"--local-addr={node.addr}",
            "--rdzv-conf=last_call_timeout=3,lease_ttl=2",
            str(SCRIPTS / "elastic.py"),
        ]
        with (tmp_path / f"n{i}.err").open("wb") as err:
            agents.append(
                node.popen(agent_argv(args), env=env, stdout=subprocess.DEVNULL, stderr=err)
            )
    wait_until(lambda: len(read_lines(tmp_path / "starts.jsonl")) == 3, 90, "three workers")
    return agents


def restarted_at_two(tmp_path: Path) -> list[dict[str, str]]:
    return [s for s in read_lines(tmp_path / "starts.jsonl") if s["WORLD_SIZE"] == "2"]


def test_killed_agent_leaves_and_the_job_finishes(
    netns_lab: MakeLab, mark: str, tmp_path: Path
) -> None:
    lab = netns_lab(3)
    agents = start_nodes(lab, tmp_path, mark, steps="60")
    os.kill(agents[2].pid, signal.SIGKILL)
    killed_at = time.time()
    assert finish(agents[:2], 120) == [0, 0], (tmp_path / "n0.err").read_text()
    restarted = restarted_at_two(tmp_path)
    assert len(restarted) == 2
    assert {s["TORCHELASTIC_RESTART_COUNT"] for s in restarted} == {"0"}
    delay = min(float(s["time"]) for s in restarted) - killed_at
    (tmp_path / "kill_to_restart.txt").write_text(f"{delay:.3f}\n")
    assert delay < 10, f"survivors restarted {delay:.2f} s after the kill"
    finished = read_lines(tmp_path / "finished.jsonl")
    assert sorted(f["WORLD_SIZE"] for f in finished) == ["2", "2"]


def test_cut_link_node_is_dropped_within_the_lease(
    netns_lab: MakeLab, mark: str, tmp_path: Path
) -> None:
    lab = netns_lab(3)
    agents = start_nodes(lab, tmp_path, mark, steps="80")
    lab.cut(2)
    cut_at = time.time()
    assert finish(agents[:2], 120) == [0, 0], (tmp_path / "n0.err").read_text()
    assert finish(agents[2:], 30) == [1]
    restarted = restarted_at_two(tmp_path)
    assert len(restarted) == 2
    delay = min(float(s["time"]) for s in restarted) - cut_at
    assert delay < 2 + 8, f"the others went on {delay:.2f} s after the cut (lease 2 s)"
    assert "lost the rendezvous store" in (tmp_path / "n2.err").read_text()
