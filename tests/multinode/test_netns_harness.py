"""The network-namespace harness itself: reachability, link cuts, cleanup."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.harness import marked_pids, wait_until
from tests.multinode.conftest import MakeLab
from tests.multinode.netns import NetnsLab, Node, list_namespaces

pytestmark = [pytest.mark.integration, pytest.mark.multinode]

PORT = 29511
NETNS_MARK = "RPT_NETNS_MARK"

# Echo server: bind ADDR:PORT, echo every connection's first message, forever.
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
while True:
    c, _ = s.accept()
    with c:
        c.sendall(c.recv(1024))
"""

# Client: connect with a per-attempt TIMEOUT, retrying refusals/timeouts until
# RETRY_FOR seconds have passed; print the echo or the last error.
CLIENT = """
import socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
timeout, retry_for = float(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + retry_for
while True:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as c:
            c.sendall(b"hello")
            print("echo", c.recv(1024).decode())
            sys.exit(0)
    except OSError as exc:
        if time.monotonic() >= deadline:
            print("fail", type(exc).__name__, exc)
            sys.exit(1)
        time.sleep(0.05)
"""


def start_server(node: Node) -> subprocess.Popen[bytes]:
    return node.popen([sys.executable, "-c", SERVER, node.addr, str(PORT)])


def connect(client: Node, server: Node, timeout: float, retry_for: float) -> tuple[bool, str]:
    argv = [sys.executable, "-c", CLIENT, server.addr, str(PORT), str(timeout), str(retry_for)]
    result = client.run(argv, timeout=retry_for + timeout + 5)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def test_two_nodes_reach_each_other_over_tcp(netns_lab: MakeLab) -> None:
    lab = netns_lab(2)
    n0, n1 = lab.node(0), lab.node(1)
    assert n0.addr != n1.addr
    assert n0.ifname == n1.ifname == "eth0"
    start_server(n0)

    ok, out = connect(n1, n0, timeout=1.0, retry_for=3.0)

    assert ok, out
    assert out == "echo hello"


def test_cut_breaks_the_link_and_restore_mends_it(netns_lab: MakeLab) -> None:
    lab = netns_lab(2)
    n0, n1 = lab.node(0), lab.node(1)
    start_server(n0)
    ok, out = connect(n1, n0, timeout=1.0, retry_for=3.0)
    assert ok, out

    lab.cut(1)
    ok, out = connect(n1, n0, timeout=1.0, retry_for=0.0)
    assert not ok, out
    assert out.startswith("fail"), out

    lab.restore(1)
    ok, out = connect(n1, n0, timeout=1.0, retry_for=3.0)
    assert ok, out
    assert out == "echo hello"


def test_nodes_are_not_reachable_from_the_host(netns_lab: MakeLab) -> None:
    lab = netns_lab(1)
    host_ip = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    assert lab.node(0).addr not in host_ip.stdout
    assert lab.switch in list_namespaces()


# A process that forks a child in its group and a grandchild that escapes
# into its own session, then sleeps: all three must die with the lab.
SPAWNER = """
import os, subprocess, sys, time
subprocess.Popen(["sleep", "60"])
subprocess.Popen(["sleep", "60"], start_new_session=True)
print("spawned", flush=True)
time.sleep(60)
"""


def populate(lab: NetnsLab, mark: str) -> None:
    for i in range(len(lab)):
        node = lab.node(i)
        proc = node.popen(
            [sys.executable, "-c", SPAWNER],
            env=node.environ({"RPT_NETNS_MARK": mark}),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "spawned"
    want = 3 * len(lab)  # each spawner, its child and its escaped grandchild
    wait_until(lambda: len(marked_pids(mark, NETNS_MARK)) == want, 10, f"{want} processes")


def assert_gone(lab: NetnsLab, mark: str) -> None:
    left = set(list_namespaces()) & set(lab.namespaces)
    assert not left, f"namespaces left behind: {left}"
    assert all(p.returncode is not None for p in lab.processes)
    assert not marked_pids(mark, NETNS_MARK)


@pytest.mark.usefixtures("netns_ready")
def test_exit_removes_namespaces_and_processes() -> None:
    mark = uuid.uuid4().hex
    with NetnsLab(2) as lab:
        populate(lab, mark)
        assert set(lab.namespaces) <= set(list_namespaces())
        env_gloo = lab.node(0).environ()["GLOO_SOCKET_IFNAME"]
        assert env_gloo == "eth0"
    assert_gone(lab, mark)


@pytest.mark.usefixtures("netns_ready")
def test_exit_cleans_up_when_the_body_raises() -> None:
    mark = uuid.uuid4().hex

    class Boom(Exception):
        pass

    labs: list[NetnsLab] = []

    def body() -> None:
        with NetnsLab(2) as lab:
            labs.append(lab)
            populate(lab, mark)
            raise Boom

    with pytest.raises(Boom):
        body()
    assert len(labs) == 1
    assert_gone(labs[0], mark)


def test_lab_can_be_closed_early(netns_lab: MakeLab) -> None:
    # The fixture closes it again at teardown: closing must be idempotent.
    lab = netns_lab(1)
    lab.close()
    assert not set(list_namespaces()) & set(lab.namespaces)
    with pytest.raises(RuntimeError, match="not running"):
        lab.cut(0)
