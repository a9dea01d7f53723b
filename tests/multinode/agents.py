"""Start rallypoint agents as separate processes, as on separate nodes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.workers.standbys_ready import all_ready, snapshots

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def c10d(nnodes: str, port: int, addr: str, nproc: int, *extra: str) -> list[str]:
    """The flags of one agent of a c10d job whose store is at 127.0.0.1:``port``."""
    return [
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--local-addr={addr}",
        "--rdzv-id=job",
        *extra,
    ]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_argv(args: Sequence[str]) -> list[str]:
    """The command line of one agent."""
    return [sys.executable, "-m", "rallypoint", *args]


def start_agent(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start an agent with its output in ``log`` (.out and .err)."""
    out = log.with_suffix(".out").open("wb")
    err = log.with_suffix(".err").open("wb")
    with out, err:
        return subprocess.Popen(agent_argv(args), env=env, stdout=out, stderr=err)


def wait_listening(host: str, port: int, timeout: float = 20) -> None:
    """Wait until something accepts connections at host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens at {host}:{port}")


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path`` (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finish(agents: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """Wait for every agent; kill those still running at the deadline."""
    deadline = time.monotonic() + timeout
    codes = []
    for agent in agents:
        try:
            codes.append(agent.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            agent.kill()
            codes.append(agent.wait())
    return codes


def wait_standbys_ready(env: dict[str, str], log_dir: Path, agents: int, timeout: float) -> None:
    """Wait until ``agents`` agents logging under ``log_dir`` have standbys all done importing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = snapshots(log_dir, env)
        # one standby per local rank; an agent with no ranks yet is not ready either
        ready = [all_ready(s.get("standbys", []), len(s.get("ranks") or [None])) for s in found]
        if len(found) == agents and all(ready):
            return
        time.sleep(0.2)
    raise AssertionError(f"the standbys of {agents} agents were not ready within {timeout} s")
