"""A hang across three agents on loopback: the culprit on another node is named by every node.

Each agent runs one gloo rank of ``tests/workers/gloo_hang.py``; rank 1 (on the
agent at 127.0.0.2) sleeps in ``load_batch`` while ranks 0 and 2 wait in
``all_reduce``. Each node sees only its own rank: the two waiting nodes can
only blame rank 1 from its node's digest in the rendezvous store. Which node
tells the job first is a race (rank 1's node closing it, or a waiting rank failing
once rank 1 is gone); either way the culprit's node announced it first
(``job/hang``), so every summary names it.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env
from tests.multinode.agents import c10d, finish, free_port, start_agent

pytestmark = [pytest.mark.integration, pytest.mark.multinode, pytest.mark.torch, pytest.mark.slow]

SCRIPT = WORKERS / "gloo_hang.py"
LINES = SCRIPT.read_text().splitlines()


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(LINES, 1) if text in line)


def summary(err: Path) -> str:
    """The first line of the agent's final words (its failure summary or its one error line)."""
    lines = err.read_text().splitlines()
    return next(x for x in lines if x.startswith(("rallypoint: rank", "rallypoint: error:")))


def three_agents(
    env: dict[str, str], flags: tuple[str, ...], logs: Path
) -> list[subprocess.Popen[bytes]]:
    """Three agents of one c10d job, one gloo rank each, at 127.0.0.1, .2 and .3."""
    port = free_port()
    return [
        start_agent(
            c10d("3", port, f"127.0.0.{i + 1}", 1, *flags, str(SCRIPT)), env, logs / f"a{i}"
        )
        for i in range(3)
    ]


def test_every_nodes_summary_names_the_culprit_on_another_node(mark: str, tmp_path: Path) -> None:
    stall_mark = tmp_path / "stalled_at"
    env = launcher_env(mark, HANG_MODE="stall", STALL_MARK=str(stall_mark))
    flags = ("--hang-timeout=5", "--stack-period=1", "--rdzv-conf=join_timeout=120")
    codes = finish(three_agents(env, flags, tmp_path), 240)
    ended = time.time()
    errs = [(tmp_path / f"a{i}.err").read_text() for i in range(3)]
    assert codes == [1, 1, 1], errs
    print(f"stall to the last agent's exit: {ended - float(stall_mark.read_text()):.1f} s")
    where = rf"in load_batch at {re.escape(str(SCRIPT))}:{line_of('time.sleep(STALL)')}"
    owner = summary(tmp_path / "a1.err")
    assert re.match(
        rf"rallypoint: rank 1 \(local 0\) on 127\.0\.0\.2 hung: stuck \d+ s {where};", owner
    )
    assert f"in all_reduce at {SCRIPT}:{line_of('dist.all_reduce(batch)')}" in owner
    for i in (0, 2):
        first = summary(tmp_path / f"a{i}.err")
        print(f"node {i}: {first}")
        assert "rank 1 (local 0) on 127.0.0.2 hung" in first, errs[i]
        assert re.search(where, first), errs[i]


def test_the_culprits_node_stops_it_and_the_group_restarts(mark: str, tmp_path: Path) -> None:
    """--max-restarts=1 and a one-off stall: every node restarts once and the job finishes."""
    env = launcher_env(mark, HANG_MODE="stall")  # rank 1 stalls on the first attempt only
    flags = ("--hang-timeout=5", "--stack-period=1", "--max-restarts=1")
    codes = finish(three_agents(env, flags, tmp_path), 300)
    errs = [(tmp_path / f"a{i}.err").read_text() for i in range(3)]
    assert codes == [0, 0, 0], errs
    assert "rank 1 (local 0) on 127.0.0.2 hung: stuck" in errs[1]
    assert "restarting the workers (restart 1 of 1)" in errs[1]
    for i in (0, 2):  # they restart without spending a restart, and never stop a rank as hung
        assert "(pid" not in "".join(x for x in errs[i].splitlines() if "hung" in x), errs[i]
