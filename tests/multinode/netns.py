"""A tiny "cluster in a box" built from Linux network namespaces.

:class:`NetnsLab` creates ``k`` nodes. Each node is a network namespace with
its own loopback and one interface, ``eth0``, addressed ``10.231.<lab>.<i+1>/24``.
All ``eth0`` interfaces are veth pairs whose other ends are enslaved to a
bridge that lives in a dedicated *switch* namespace, so the host's root
namespace is never modified: no interfaces, routes, NAT or forwarding are
added there, and the 10.231.0.0/16 addresses exist only inside the lab.
There is no default route in any node; traffic cannot leave the machine.

Usage::

    with NetnsLab(2) as lab:
        server = lab.node(0).popen([sys.executable, "-c", "..."])
        result = lab.node(1).run([sys.executable, "-c", "..."], timeout=10)
        lab.cut(1)       # node 1 loses its link (switch-side veth down)
        lab.restore(1)   # and gets it back

Every process started with :meth:`Node.popen` / :meth:`Node.run` runs in a
new session (its own process group) and is tracked by the lab. On exit,
including when the body raised, the lab SIGKILLs every tracked process group
and any other process still inside one of its namespaces, then deletes all
namespaces it created (which removes the veths and the bridge with them).

Namespace names are ``<prefix><creator pid>-<random>-<role>`` (default prefix
``rpt-``), so :func:`cleanup_stale` can find and delete leftovers of crashed
sessions whose creator is gone, without touching labs of concurrent sessions.

Gloo (torch.distributed) note: inside a node, Gloo must be told which
interface to use, otherwise it resolves the hostname (which is the same for
every node and maps to the host, not the lab address). Give workers
``GLOO_SOCKET_IFNAME=eth0`` in their environment; :meth:`Node.environ`
returns ``os.environ`` plus that variable (and any extras). Rendezvous
endpoints should use the node's :attr:`Node.addr`, e.g. ``10.231.7.1:29500``.

Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN) and iproute2's ``ip``.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

__all__ = [
    "DEFAULT_PREFIX",
    "NetnsError",
    "NetnsLab",
    "Node",
    "cleanup_stale",
    "ip_binary",
    "list_namespaces",
    "netns_available",
]

DEFAULT_PREFIX = "rpt-"
IFNAME = "eth0"
BRIDGE = "br0"
SUBNET_FIRST_OCTETS = "10.231"


class NetnsError(RuntimeError):
    """An ``ip`` command needed to build or tear down a lab failed."""


def ip_binary() -> str:
    """Absolute path of iproute2's ``ip`` (``/usr/sbin/ip`` if not on PATH)."""
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    return found or "/usr/sbin/ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [ip_binary(), *args], capture_output=True, text=True, check=False, timeout=30
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def _kill_netns_processes(ns: str, rounds: int = 20) -> None:
    """SIGKILL every process inside ``ns`` until none is left (or give up)."""
    for _ in range(rounds):
        pids = [pid for pid in _netns_pids(ns) if pid != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def netns_available() -> str | None:
    """``None`` if labs can be built here, else the reason why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(ip_binary()):
        return "iproute2 'ip' not found"
    probe = f"{DEFAULT_PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
    try:
        _ip("netns", "add", probe)
    except (NetnsError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def cleanup_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete leftover namespaces named ``<prefix><pid>-...`` whose creator is dead.

    Namespaces whose name carries no pid are deleted only if no process is
    inside them. Processes still inside a stale namespace are killed first.
    Returns the names that were deleted.
    """
    removed = []
    for ns in list_namespaces():
        if not ns.startswith(prefix):
            continue
        owner = ns[len(prefix) :].split("-", 1)[0]
        if owner.isdigit():
            if _pid_alive(int(owner)):
                continue
            _kill_netns_processes(ns)
        elif _netns_pids(ns):
            continue
        if _ip("netns", "del", ns, check=False).returncode == 0:
            removed.append(ns)
    return removed


@dataclass
class Node:
    """One node of a :class:`NetnsLab`: a namespace with ``lo`` and ``eth0``."""

    lab: NetnsLab = field(repr=False)
    index: int
    name: str
    addr: str
    ifname: str = IFNAME
    switch_port: str = ""

    def netns_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with ``ip netns exec <ns>``."""
        return [ip_binary(), "netns", "exec", self.name, *map(str, argv)]

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``os.environ`` plus ``GLOO_SOCKET_IFNAME=<ifname>`` plus ``extra``."""
        env = dict(os.environ)
        env["GLOO_SOCKET_IFNAME"] = self.ifname
        env.update(extra or {})
        return env

    def popen(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the node, in a new session, tracked by the lab.

        ``env`` replaces the environment like :class:`subprocess.Popen`'s
        (``None`` inherits ours); it must contain ``PATH`` if ``argv[0]`` is
        not absolute. Other keyword arguments go to :class:`subprocess.Popen`.
        """
        return self.lab._spawn(self.netns_argv(argv), env, kw)

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        input: Any = None,
        timeout: float | None = 30.0,
        check: bool = False,
        capture_output: bool = True,
        text: bool = True,
        **kw: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside the node to completion, like :func:`subprocess.run`.

        Output is captured as text by default. On timeout the whole process
        group is killed and :class:`subprocess.TimeoutExpired` is raised.
        """
        if capture_output:
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kw.setdefault("stdin", subprocess.PIPE)
        proc = self.popen(argv, env=env, text=text, **kw)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc)
            proc.communicate()
            raise
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check:
            result.check_returncode()
        return result


def _killpg(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


class NetnsLab:
    """``k`` nodes on one private L2 segment; a context manager.

    ``lab.node(i)`` is node ``i``; ``lab.cut(i)`` / ``lab.restore(i)`` take its
    link down / up at the switch. See the module docstring.
    """

    def __init__(self, k: int, *, prefix: str = DEFAULT_PREFIX, lab_id: int | None = None):
        if k < 1 or k > 250:
            raise ValueError(f"k must be in 1..250, got {k}")
        self.k = k
        self.prefix = prefix
        self.lab_id = random.randrange(1, 255) if lab_id is None else lab_id
        self.token = f"{prefix}{os.getpid()}-{secrets.token_hex(3)}"
        self.switch = f"{self.token}-sw"
        self.subnet = f"{SUBNET_FIRST_OCTETS}.{self.lab_id}.0/24"
        self.nodes: list[Node] = [
            Node(
                lab=self,
                index=i,
                name=f"{self.token}-n{i}",
                addr=f"{SUBNET_FIRST_OCTETS}.{self.lab_id}.{i + 1}",
                switch_port=f"port{i}",
            )
            for i in range(k)
        ]
        self.processes: list[subprocess.Popen[Any]] = []
        self.created: list[str] = []
        self._entered = False

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Self:
        self._entered = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        sw = self.switch
        self._add_netns(sw)
        _ip("-n", sw, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0")
        _ip("-n", sw, "link", "set", BRIDGE, "up")
        for node in self.nodes:
            self._add_netns(node.name)
            _ip("-n", sw, "link", "add", node.switch_port, "type", "veth",
                "peer", "name", node.ifname, "netns", node.name)  # fmt: skip
            _ip("-n", node.name, "addr", "add", f"{node.addr}/24", "dev", node.ifname)
            _ip("-n", node.name, "link", "set", node.ifname, "up")
            _ip("-n", sw, "link", "set", node.switch_port, "master", BRIDGE)
            _ip("-n", sw, "link", "set", node.switch_port, "up")

    def close(self) -> None:
        """Kill everything started in the lab and delete its namespaces. Idempotent."""
        for proc in self.processes:
            if proc.poll() is None:
                _killpg(proc)
            else:
                # The leader is gone; its group may not be.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        # Processes that left their group (setsid, daemons) but not the netns.
        for ns in self.created:
            _kill_netns_processes(ns)
        errors = []
        for ns in reversed(self.created):
            deleted = _ip("netns", "del", ns, check=False)
            if deleted.returncode != 0 and ns in list_namespaces():
                errors.append(f"{ns}: {deleted.stderr.strip()}")
        self.created.clear()
        if errors:
            raise NetnsError("could not delete namespaces: " + "; ".join(errors))

    # -- API -----------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        """All namespace names this lab uses (switch first)."""
        return [self.switch, *(n.name for n in self.nodes)]

    def __len__(self) -> int:
        return self.k

    def node(self, i: int) -> Node:
        """Node ``i`` (0-based)."""
        return self.nodes[i]

    def cut(self, i: int) -> None:
        """Cut node ``i``'s link: its switch-side veth goes down (packets dropped)."""
        self._require_built()
        _ip("-n", self.switch, "link", "set", self.nodes[i].switch_port, "down")

    def restore(self, i: int) -> None:
        """Undo :meth:`cut`."""
        self._require_built()
        _ip("-n", self.switch, "link", "set", self.nodes[i].switch_port, "up")

    def _require_built(self) -> None:
        if self.switch not in self.created:
            raise RuntimeError("the lab is not running (use it as a context manager)")

    def _spawn(
        self, argv: list[str], env: Mapping[str, str] | None, kw: dict[str, Any]
    ) -> subprocess.Popen[Any]:
        self._require_built()
        kw["start_new_session"] = True
        proc: subprocess.Popen[Any] = subprocess.Popen(
            argv, env=None if env is None else dict(env), **kw
        )
        self.processes.append(proc)
        return proc
