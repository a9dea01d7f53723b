"""Real etcd servers for tests: each in a temp folder, on free loopback ports, always stopped.

``EtcdCluster(n)`` starts ``n`` members (``/usr/bin/etcd``, or ``$RALLYPOINT_ETCD``) that
form one cluster, waits until every member reports healthy, and on ``stop`` kills them and
removes their folder (also when the test failed). ``kill(i)`` SIGKILLs one member, as a
crashed machine would. ``tls=`` serves https with the given certificate files.

Timing is tuned for tests: heartbeat 50 ms and election timeout 500 ms, which also makes
etcd's smallest lease TTL 1 s (it is ceil(1.5 x election timeout)).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ETCD = os.environ.get("RALLYPOINT_ETCD") or shutil.which("etcd") or "/usr/bin/etcd"


def have_etcd() -> bool:
    """Whether an etcd binary is installed."""
    return Path(ETCD).is_file() and os.access(ETCD, os.X_OK)


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class ServerTls:
    """The files of a TLS-serving etcd.

    Attributes:
        cert, key: the server's certificate (for 127.0.0.1) and key.
        ca: the CA that signed every certificate here.
        client: a client certificate and key; given, etcd requires client certificates
            (``--client-cert-auth``) and the helper's own checks present this pair.
    """

    cert: Path
    key: Path
    ca: Path
    client: tuple[Path, Path] | None = None


def _scratch() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="rallypoint-etcd-", dir=base))


class EtcdCluster:
    """``n`` etcd members on loopback forming one cluster."""

    def __init__(self, n: int = 1, *, tls: ServerTls | None = None) -> None:
        self.n = n
        self.tls = tls
        self.dir = _scratch()
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        ports = free_ports(2 * n)
        self.client_ports = ports[:n]
        self.peer_ports = ports[n:]

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.client_ports]

    def url(self, i: int) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_ports[i]}"

    def start(self, timeout: float = 15.0) -> EtcdCluster:
        """Start every member and wait until each is healthy; clean up if that fails."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        token = uuid.uuid4().hex
        peers = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        for i in range(self.n):
            args = [
                ETCD,
                f"--name=m{i}",
                f"--data-dir={self.dir / f'm{i}'}",
                f"--listen-client-urls={self.url(i)}",
                f"--advertise-client-urls={self.url(i)}",
                f"--listen-peer-urls=http://127.0.0.1:{self.peer_ports[i]}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer_ports[i]}",
                f"--initial-cluster={peers}",
                f"--initial-cluster-token={token}",
                "--initial-cluster-state=new",
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--logger=zap",
                "--log-level=warn",
            ]
            if self.tls is not None:
                args += [f"--cert-file={self.tls.cert}", f"--key-file={self.tls.key}"]
                if self.tls.client is not None:
                    args += ["--client-cert-auth", f"--trusted-ca-file={self.tls.ca}"]
            log = (self.dir / f"m{i}.log").open("wb")
            with log:
                self.procs[i] = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        deadline = time.monotonic() + timeout
        for i in range(self.n):
            self._wait_healthy(i, deadline)

    def _health_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        if self.tls.client is not None:
            ctx.load_cert_chain(*self.tls.client)
        return ctx

    def _wait_healthy(self, i: int, deadline: float) -> None:
        ctx = self._health_context()
        while True:
            proc = self.procs[i]
            assert proc is not None
            if proc.poll() is not None:
                raise RuntimeError(f"etcd member m{i} exited early:\n{self.log(i)}")
            url = f"{self.url(i)}/health"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=1, context=ctx) as r,
            ):
                if b'"true"' in r.read():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd member m{i} did not become healthy:\n{self.log(i)}")
            time.sleep(0.02)

    def log(self, i: int) -> str:
        path = self.dir / f"m{i}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (its data stays; it is not restarted)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    def post(self, path: str, body: dict[str, object], *, member: int = 0) -> dict[str, object]:
        """POST to a live member's v3 JSON gateway (for setup: users, auth, compaction)."""
        request = urllib.request.Request(
            f"{self.url(member)}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5, context=self._health_context()) as r:
            reply: dict[str, object] = json.loads(r.read())
        return reply

    def leader(self) -> int:
        """The index of the current leader (asked of a live member)."""
        for i, proc in enumerate(self.procs):
            if proc is None or proc.poll() is not None:
                continue
            status = self.post("/v3/maintenance/status", {}, member=i)
            header = status["header"]
            assert isinstance(header, dict)
            if status.get("leader") == header["member_id"]:
                return i
        raise RuntimeError("no member says it leads")

    def enable_auth(self, password: str) -> None:
        """Create ``root`` with ``password`` and turn etcd's authentication on."""
        self.post("/v3/auth/user/add", {"name": "root", "password": password})
        self.post("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self.post("/v3/auth/enable", {})

    def stop(self) -> None:
        """Kill every member and remove the folder."""
        for i in range(self.n):
            self.kill(i)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
