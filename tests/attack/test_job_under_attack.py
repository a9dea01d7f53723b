"""A real two-agent job with a secret keeps running through the pre-handshake attack.

Two agents on loopback addresses (as in tests/multinode), the first hosting the store;
once both workers run their all-reduces, 10 connections send 16 MiB frames and 1,000
others sit idle, none of them authenticated, while a probe client with the secret reads
the store every 10 ms. The job must finish as if nothing happened: no restart, no lost
store; the host agent (which holds the store) stays under 100 MiB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attack.harness import MIB, Probe, attacking, peak_rss, rss_of
from tests.conftest import launcher_env
from tests.harness import wait_until
from tests.multinode.agents import (
    SCRIPTS,
    finish,
    free_port,
    read_lines,
    start_agent,
    wait_listening,
)

pytestmark = [pytest.mark.integration, pytest.mark.multinode, pytest.mark.torch]

ATTACK_S = 6


def agent_args(port: int, addr: str) -> list[str]:
    return [
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--local-addr={addr}",
        "--rdzv-id=job",
        str(SCRIPTS / "elastic.py"),
    ]


def test_two_agent_job_runs_through_the_pre_handshake_attack(mark: str, tmp_path: Path) -> None:
    port = free_port()
    env = launcher_env(mark, OUT_DIR=str(tmp_path), STEPS="120", RALLYPOINT_SECRET="s3cret")
    host = start_agent(agent_args(port, "127.0.0.1"), env, tmp_path / "a0")
    wait_listening("127.0.0.1", port)
    other = start_agent(agent_args(port, "127.0.0.2"), env, tmp_path / "a1")
    wait_until(lambda: len(read_lines(tmp_path / "starts.jsonl")) == 2, 90, "both workers")
    with Probe(port, run_id="job", secret="s3cret") as probe:
        baseline = rss_of(host.pid)
        with (
            attacking("big-frames", port, ATTACK_S) as frames,
            attacking("idle", port, ATTACK_S) as idle,
        ):
            peak = peak_rss(host.pid, ATTACK_S, baseline)
    codes = finish([host, other], 120)
    errs = "".join((tmp_path / f"a{i}.err").read_text() for i in range(2))
    print(f"\njob under attack: {frames} {idle}")
    print(f"host agent RSS {baseline / MIB:.1f} MiB -> peak {peak / MIB:.1f} MiB")
    print(f"probe: {probe.summary()}")
    assert codes == [0, 0], errs[-3000:]
    assert frames["frames_started"] >= 10
    assert idle["opened"] >= 1000
    starts = read_lines(tmp_path / "starts.jsonl")
    assert len(starts) == 2  # no restart
    assert len(read_lines(tmp_path / "finished.jsonl")) == 2
    assert "lost the rendezvous store" not in errs
    assert "Traceback" not in errs
    assert probe.lost == []
    assert peak < 100 * MIB
    assert max(probe.latencies) < 1.0  # generous; about 100 ms on an idle machine
    refusals = [line for line in errs.splitlines() if "store refused" in line]
    assert len(refusals) <= 2 * ATTACK_S // 10 + 4, refusals
