"""Helpers of the attack tests: a store in its own process, attackers, a well-behaved probe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rallypoint.store import StoreClient, StoreError

HERE = Path(__file__).resolve().parent
RUN, SECRET = "attack-run", "attack-secret"
MIB = 1 << 20


def rss_of(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Server:
    """A store server process (``serve.py``) and where its log goes."""

    proc: subprocess.Popen[str]
    port: int
    log: Path

    def rss(self) -> int:
        """The server's resident set size now, in bytes."""
        return rss_of(self.proc.pid)

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return self.log.read_text()


@contextlib.contextmanager
def store_server(tmp_path: Path, **config: object) -> Iterator[Server]:
    """Start ``serve.py`` with a secret and ``config``; stop it (stdin closed) at the end."""
    log = tmp_path / "server.log"
    full = {"run_id": RUN, "secret": SECRET, **config}
    with (
        log.open("w") as err,
        subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), json.dumps(full)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            port = json.loads(proc.stdout.readline())["port"]
            yield Server(proc, port, log)
        finally:
            proc.kill()


@contextlib.contextmanager
def attacking(mode: str, port: int, seconds: float, *creds: str) -> Iterator[dict[str, int]]:
    """Run ``attacker.py MODE`` for ``seconds``; the dict gets its report when it ends."""
    argv = [sys.executable, str(HERE / "attacker.py"), mode, str(port), str(seconds), *creds]
    report: dict[str, int] = {}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == {"ready": mode}
            yield report
            report.update(json.loads(proc.stdout.readline() or "{}"))
        finally:
            proc.kill()


@dataclass
class Probe:
    """A well-behaved client in a thread of its own: a get every 10 ms, a kept lease.

    It holds a lease (``ttl``) with one key on it and keeps it alive every ``ttl / 3``,
    as an agent does; ``lost`` lists anything that went wrong.
    """

    port: int
    ttl: float = 2.0
    run_id: str = RUN
    secret: str = SECRET
    latencies: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(ready)))
        self._thread.start()
        assert ready.wait(30), "the probe could not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def summary(self) -> str:
        """The figures, for the test's output."""
        ms = sorted(1000 * x for x in self.latencies)
        p99 = statistics.quantiles(ms, n=100)[98] if len(ms) > 1 else float("nan")
        median, worst = statistics.median(ms), ms[-1]
        return f"{len(ms)} probes: p50 {median:.1f} ms, p99 {p99:.1f} ms, worst {worst:.1f} ms"

    async def _run(self, ready: threading.Event) -> None:
        secret = self.secret.encode()
        client = await StoreClient.connect("127.0.0.1", self.port, self.run_id, secret, 10)
        lease = await client.lease_grant(self.ttl)
        await client.put("probe/alive", "yes", lease=lease)
        ready.set()
        keeper = asyncio.create_task(self._keep(client, lease))
        try:
            while not self._stop.is_set():
                sent = time.perf_counter()
                got = await client.get("probe/alive")
                self.latencies.append(time.perf_counter() - sent)
                if got is None:
                    self.lost.append("the probe's leased key vanished")
                    break
                await asyncio.sleep(0.01)
        except StoreError as exc:
            self.lost.append(f"probe: {exc}")
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await client.close()

    async def _keep(self, client: StoreClient, lease: int) -> None:
        try:
            while True:
                await asyncio.sleep(self.ttl / 3)
                await client.lease_keepalive(lease)
        except StoreError as exc:
            self.lost.append(f"keep-alive: {exc}")


def peak_rss(server: Server | int, seconds: float, baseline: int) -> int:
    """Sample a server's (or a pid's) RSS every 50 ms for ``seconds``; the peak seen."""
    pid = server if isinstance(server, int) else server.proc.pid
    peak = baseline
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        peak = max(peak, rss_of(pid))
        time.sleep(0.05)
    return peak
