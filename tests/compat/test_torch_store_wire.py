"""torch 2.13's own TCPStore client against the agent's torch store, beside torch's server.

Every query type goes through the real client (``scripts/store_ops.py``), once against
torch's C++ server and once against ours, and the results must be the same, waits that
time out included. A client killed in the middle of a wait leaves nothing behind.
The clients always run in child processes: torch's bindings may hold the interpreter
lock while they block on a socket, which would stall a server thread in the same process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rallypoint.torchstore.host import TorchStoreHost
from tests.compat._helpers import SCRIPTS

pytestmark = [pytest.mark.integration, pytest.mark.torch]


@pytest.fixture
def host() -> Iterator[TorchStoreHost]:
    served = TorchStoreHost.listen(0)
    yield served
    served.release()


def _ops(*where: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "store_ops.py"), *where],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_every_query_type_answers_as_torchs_own_server(host: TorchStoreHost) -> None:
    ours = _ops("127.0.0.1", str(host.port))
    theirs = _ops("torch")
    assert ours == theirs
    assert ours["wait-timeout"] == "raised DistStoreError"  # the timeout, then CANCEL_WAIT
    assert ours["after-timeout"] == "v2"  # ... and the connection still in step
    assert host.server.state.pending_waits == 0


CLIENT = """
import sys
from datetime import timedelta
import torch.distributed as dist
store = dist.TCPStore("127.0.0.1", int(sys.argv[1]), 1, False, timedelta(seconds=120))
print("connected", flush=True)
store.wait([sys.argv[2]])
print("woken", flush=True)
"""


def _waiter(port: int, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port), key], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "connected\n"
    return proc


def _until(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)


def test_a_client_killed_mid_wait_is_forgotten_and_the_others_go_on(
    host: TorchStoreHost,
) -> None:
    doomed, survivor = _waiter(host.port, "late"), _waiter(host.port, "late")
    _until(lambda: host.server.state.pending_waits == 2)
    assert host.server.state.pending_waits == 2
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=30)
    _until(lambda: host.server.state.pending_waits == 1)
    assert host.server.state.pending_waits == 1
    setter = subprocess.run([sys.executable, "-c", SETTER, str(host.port)], timeout=120, check=True)
    assert setter.returncode == 0
    assert survivor.communicate(timeout=60)[0] == "woken\n"
    assert host.server.state.pending_waits == 0


SETTER = """
import sys
from datetime import timedelta
import torch.distributed as dist
dist.TCPStore("127.0.0.1", int(sys.argv[1]), 1, False, timedelta(seconds=60)).set("late", b"1")
"""
