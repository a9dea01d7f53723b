"""A real Slurm cluster on one machine: munge, slurmctld and one slurmd per network namespace.

Layout (see ../shared/slurm-on-one-machine.md for why each piece is so):

- ``munged`` in the host namespace, with its own key and socket in the state folder (a unix
  socket is reachable from every network namespace);
- ``slurmctld`` in namespace ``<prefix>-ctl`` (hostname the same), which also holds the bridge
  ``br0`` at ``<net>.1``; every client (srun, sbatch, scancel, ...) runs there too;
- ``slurmd`` of node I in namespace ``<prefix>-nI``, hostname ``<prefix>-nI``, whose ``eth0`` is a
  veth into ``br0`` at ``<net>.(10+I)``.

Each daemon and client runs under ``nsenter --net`` plus ``unshare --uts --mount``, with its own
``/etc/hosts`` (every node name) and ``/etc/resolv.conf`` bind-mounted privately: ``ip netns
exec`` would remount ``/sys`` and hide the cgroup mounts that slurmd needs. The host's ``/etc``
is not touched; ``SLURM_CONF`` points at the cluster's own slurm.conf. Namespace names and the
/24 are unique per cluster, so clusters of concurrent sessions do not meet.

:meth:`SlurmCluster.down` SIGKILLs every process inside the cluster's namespaces (daemons,
steps and any orphan), stops munged, deletes the namespaces and the freezer cgroup trees, and
is safe to call at any point of :meth:`SlurmCluster.up`, or twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
FREEZER = Path("/sys/fs/cgroup/freezer")
_ENTER = (
    'set -e; mount --bind "$SLM_ETC/hosts" /etc/hosts; '
    'mount --bind "$SLM_ETC/resolv.conf" /etc/resolv.conf; '
    'hostname "$SLM_HOST"; exec "$@"'
)


def missing_tools() -> list[str]:
    """The programs the cluster needs that are not installed (or a reason it cannot run)."""
    if os.geteuid() != 0:
        return ["root"]
    found = [shutil.which(p) or shutil.which(p, path="/usr/sbin:/sbin") for p in DAEMONS]
    names = [name for name, path in zip(DAEMONS, found, strict=True) if path is None]
    return names + [p for p in ("srun", "ip", "nsenter", "unshare") if shutil.which(p) is None]


def freezer_available() -> bool:
    """Whether proctrack/cgroup can work here: a cgroup-v1 freezer is mounted."""
    return (FREEZER / "cgroup.procs").exists()


def _sbin(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


def _run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie waits for PID 1 to reap it: gone for us


@dataclass
class SlurmCluster:
    """``nodes`` slurmd in namespaces, one controller, one munged; ``proctrack`` as asked."""

    state: Path
    nodes: int = 2
    proctrack: str = "cgroup"  # or "linuxproc"
    kill_wait: int = 10
    prefix: str = field(default_factory=lambda: f"rps{os.getpid() % 10000}{secrets.token_hex(1)}")
    net: str = field(default_factory=lambda: f"10.251.{secrets.randbelow(250) + 2}")
    _namespaces: list[str] = field(default_factory=list)
    _munged: int | None = None

    # --- names ---------------------------------------------------------------------------

    @property
    def controller(self) -> str:
        """The controller's namespace and hostname."""
        return f"{self.prefix}-ctl"

    def node(self, index: int) -> str:
        """Node ``index``'s (from 1) namespace, hostname and Slurm node name."""
        return f"{self.prefix}-n{index}"

    def address(self, index: int) -> str:
        """Node ``index``'s address (0: the controller)."""
        return f"{self.net}.{1 if index == 0 else 10 + index}"

    @property
    def conf(self) -> Path:
        return self.state / "slurm.conf"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for clients and jobs: SLURM_CONF, plus ``extra``."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **(extra or {})}

    # --- running things inside ---------------------------------------------------------

    def inside(self, namespace: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run in ``namespace`` with its hostname and /etc files; exec keeps the pid."""
        return [
            "nsenter",
            f"--net=/run/netns/{namespace}",
            "--",
            "unshare",
            "--uts",
            "--mount",
            "--propagation",
            "private",
            "--",
            "env",
            f"SLM_ETC={self.state / 'etc' / namespace}",
            f"SLM_HOST={namespace}",
            "sh",
            "-c",
            _ENTER,
            "sh",
            *argv,
        ]

    def client(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (``srun ...``) in the controller's namespace, to the end."""
        return subprocess.run(
            self.inside(self.controller, argv),
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_client(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kw: object
    ) -> subprocess.Popen[str]:
        """Start a Slurm client in the background (its pid is the client's own)."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            self.inside(self.controller, argv),
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )

    # --- up ------------------------------------------------------------------------------

    def up(self, timeout: float = 60) -> SlurmCluster:
        """Build the cluster and wait until every node is idle; tear down on failure."""
        try:
            self._write_files()
            self._start_munge()
            self._make_network()
            self._start_controller(timeout)
            self._start_nodes(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _write_files(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state, 0o755)  # munged wants its socket's folders searchable by all
        names = [(self.controller, self.address(0))]
        names += [(self.node(i), self.address(i)) for i in range(1, self.nodes + 1)]
        hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in names)
        for name, _ in names:
            folder = self.state / "etc" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(hosts)
            (folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        self.conf.write_text(self._slurm_conf())
        (self.state / "cgroup.conf").write_text(
            "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainCores=no\n"
            "ConstrainRAMSpace=no\nConstrainDevices=no\n"
        )

    def _hardware(self) -> str:
        line = _run([_sbin("slurmd"), "-C"]).stdout.splitlines()[0]
        keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        return " ".join(f for f in line.split() if f.split("=")[0] in keep)

    def _slurm_conf(self) -> str:
        s, hw = self.state, self._hardware()
        lines = [
            "ClusterName=rallypoint",
            f"SlurmctldHost={self.controller}({self.address(0)})",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={s}/munge-socket/munge.socket",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={s}/ctld",
            f"SlurmdSpoolDir={s}/spool-%n",
            f"SlurmctldPidFile={s}/slurmctld.pid",
            f"SlurmdPidFile={s}/slurmd-%n.pid",
            f"SlurmctldLogFile={s}/slurmctld.log",
            f"SlurmdLogFile={s}/slurmd-%n.log",
            f"ProctrackType=proctrack/{self.proctrack}",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"KillWait={self.kill_wait}",
            "InactiveLimit=0",
            "MinJobAge=60",
            "SlurmdTimeout=60",
        ]
        lines += [
            f"NodeName={self.node(i)} NodeAddr={self.address(i)} {hw} RealMemory=256 State=UNKNOWN"
            for i in range(1, self.nodes + 1)
        ]
        lines.append("PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def _start_munge(self) -> None:
        folder = self.state / "munge"
        folder.mkdir(mode=0o700, exist_ok=True)
        sockets = self.state / "munge-socket"
        sockets.mkdir(mode=0o755, exist_ok=True)
        key = folder / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        _run(
            [
                _sbin("munged"),
                f"--socket={sockets / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={folder / 'munged.pid'}",
                f"--log-file={folder / 'munged.log'}",
                f"--seed-file={folder / 'munged.seed'}",
            ]
        )
        self._munged = int(self._poll_file(folder / "munged.pid", 10))

    def _make_network(self) -> None:
        ctl = self.controller
        self._add_namespace(ctl)
        _run(["ip", "-n", ctl, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", ctl, "addr", "add", f"{self.address(0)}/24", "dev", "br0"])
        _run(["ip", "-n", ctl, "link", "set", "br0", "up"])
        for i in range(1, self.nodes + 1):
            node = self.node(i)
            self._add_namespace(node)
            _run(
                [
                    "ip",
                    "-n",
                    ctl,
                    "link",
                    "add",
                    f"vn{i}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    node,
                ]
            )
            _run(["ip", "-n", ctl, "link", "set", f"vn{i}", "master", "br0", "up"])
            _run(["ip", "-n", node, "addr", "add", f"{self.address(i)}/24", "dev", "eth0"])
            _run(["ip", "-n", node, "link", "set", "eth0", "up"])

    def _add_namespace(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _start_controller(self, timeout: float) -> None:
        _run(self.inside(self.controller, [_sbin("slurmctld"), "-c", "-i"]), env=self.env())
        deadline = time.monotonic() + timeout
        while "UP" not in self.client(["scontrol", "ping"], timeout=timeout).stdout:
            self._check_time(deadline, "slurmctld did not answer", "slurmctld.log")

    def _start_nodes(self, timeout: float) -> None:
        for i in range(1, self.nodes + 1):
            argv = [_sbin("slurmd"), "-N", self.node(i)]
            _run(self.inside(self.node(i), argv), env=self.env())
        deadline = time.monotonic() + timeout
        while True:
            states = self.client(["sinfo", "-h", "-N", "-o", "%T"]).stdout.split()
            if len(states) == self.nodes and all(s == "idle" for s in states):
                return
            self._check_time(deadline, f"nodes not idle: {states}", "slurmd-*.log")

    def _check_time(self, deadline: float, what: str, log: str) -> None:
        if time.monotonic() > deadline:
            tails = [p.read_text()[-2000:] for p in self.state.glob(log)]
            raise RuntimeError(f"{what}; log: {' '.join(tails)}")
        time.sleep(0.2)

    @staticmethod
    def _poll_file(path: Path, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} never appeared")
            time.sleep(0.05)
        return path.read_text().strip()

    # --- looking inside -------------------------------------------------------------------

    def pids_in(self, namespace: str) -> list[int]:
        """Every live process inside ``namespace`` (daemons, steps, tasks, orphans)."""
        out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if _alive(int(p))]

    def leftovers(self, index: int) -> list[tuple[int, str]]:
        """Processes on node ``index`` other than its slurmd: (pid, command line)."""
        found = []
        for pid in self.pids_in(self.node(index)):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if Path(argv[0].decode()).name != "slurmd":
                    found.append((pid, b" ".join(argv).decode(errors="replace")))
        return found

    def wait_idle(self, timeout: float = 60) -> list[tuple[int, str]]:
        """Wait until no node runs anything but slurmd; return what is left after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = [p for i in range(1, self.nodes + 1) for p in self.leftovers(i)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    # --- down ----------------------------------------------------------------------------

    def down(self) -> None:
        """Kill everything of the cluster and delete its namespaces and cgroups."""
        for namespace in reversed(self._namespaces):
            self._kill_all(namespace)
        for namespace in self._namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._namespaces.clear()
        if self._munged is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._munged, signal.SIGTERM)
            self._munged = None
        for i in range(1, self.nodes + 1):
            _remove_tree(FREEZER / f"slurm_{self.node(i)}")

    def _kill_all(self, namespace: str) -> None:
        deadline = time.monotonic() + 10
        while (pids := self.pids_in(namespace)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def __enter__(self) -> SlurmCluster:
        return self.up()

    def __exit__(self, *_exc: object) -> None:
        self.down()


def _remove_tree(root: Path) -> None:
    """rmdir a cgroup tree bottom up (a cgroup folder is removed with rmdir only)."""
    if not root.is_dir():
        return
    for folder in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def job_id(sbatch_output: str) -> int:
    """The id in ``Submitted batch job 12`` or ``salloc: Granted job allocation 12``."""
    found = re.search(r"(?:job|allocation) ([0-9]+)", sbatch_output)
    if found is None:
        raise ValueError(f"no job id in {sbatch_output!r}")
    return int(found[1])
