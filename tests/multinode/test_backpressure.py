"""A launcher whose stdout nobody reads holds its workers back, and the job goes on.

Two agents on loopback run one gloo job; each worker prints a ~1 KB line every
10 ms through its agent (``--tee=1``). Each agent's stdout is a pipe that the
test leaves unread for 30 s: more than the pipes and the agent's buffer hold,
so the agent must stop reading its worker (which then waits in ``write``)
while its event loop goes on keeping the node's lease alive. Under the old
synchronous console the agent's loop blocked in ``write`` and its node was
dropped once its lease (5 s) ran out.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import launcher_env
from tests.multinode.agents import (
    SCRIPTS,
    agent_argv,
    c10d,
    cpu_seconds,
    finish,
    free_port,
    read_lines,
    wait_listening,
)

pytestmark = [pytest.mark.integration, pytest.mark.multinode, pytest.mark.torch]

LINES = 1500  # 1.5 MB per worker: 15 s of printing, more than 30 s of blocking can buffer
BLOCKED = 30.0
LINE = re.compile(rb"rank (\d) line (\d+) at (\d+\.\d+) x+\n")


def read_all(fd: int, into: list[bytes]) -> threading.Thread:
    def run() -> None:
        with os.fdopen(fd, "rb") as pipe:
            into.append(pipe.read())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def cpu_share(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU use over the next ``seconds``, as a share of one core."""
    before, since = [cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - since
    return [(cpu_seconds(pid) - cpu) / elapsed for pid, cpu in zip(pids, before, strict=True)]


def start_agents(
    tmp_path: Path, env: dict[str, str]
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """Two agents of one job, each with its stdout a pipe of which we return the read end."""
    port = free_port()
    agents, pipes = [], []
    for i in range(2):
        read_fd, write_fd = os.pipe()
        args = c10d("2", port, f"127.0.0.{i + 1}", 1, "--tee=1", str(SCRIPTS / "steady_printer.py"))
        with (tmp_path / f"agent{i}.err").open("wb") as err:
            agents.append(subprocess.Popen(agent_argv(args), env=env, stdout=write_fd, stderr=err))
        os.close(write_fd)
        pipes.append(read_fd)
        if i == 0:
            wait_listening("127.0.0.1", port)
    return agents, pipes


def test_unread_stdout_holds_workers_back_and_drops_no_node(mark: str, tmp_path: Path) -> None:
    agents, pipes = start_agents(
        tmp_path, launcher_env(mark, OUT_DIR=str(tmp_path), LINES=str(LINES))
    )
    outputs: list[list[bytes]] = [[], []]
    try:
        time.sleep(BLOCKED / 3)  # by now the consoles are full (torch import + ~1 MB printed)
        busy = cpu_share([a.pid for a in agents], BLOCKED * 2 / 3)
        still_running = [a.poll() is None for a in agents]
    finally:
        readers = [read_all(fd, out) for fd, out in zip(pipes, outputs, strict=True)]
    codes = finish(agents, 120)
    for reader in readers:
        reader.join(30)
    errors = [(tmp_path / f"agent{i}.err").read_text() for i in range(2)]
    assert still_running == [True, True], errors
    assert codes == [0, 0], errors
    print(f"agents' CPU while their stdout was blocked: {[f'{b:.1%}' for b in busy]}")
    assert max(busy) < 0.1, busy  # waiting in epoll, not spinning
    starts = read_lines(tmp_path / "starts.jsonl")
    assert sorted((s["RANK"], s["restart"]) for s in starts) == [("0", "0"), ("1", "0")], starts
    for node, (out,) in enumerate(outputs):
        lines = LINE.findall(out)
        assert out.count(b"\n") == len(lines), f"node {node}: a line was cut or mixed"
        assert [int(i) for _, i, _ in lines] == list(range(LINES)), f"node {node}: lines lost"
        stamps = [float(t) for _, _, t in lines]
        held = max(b - a for a, b in itertools.pairwise(stamps))
        print(f"node {node}: its worker was held back {held:.1f} s in one write")
        assert held > 5, "the worker was never held back: nothing was tested"
