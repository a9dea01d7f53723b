"""A standby becomes exactly the worker a cold start would have been.

Each case runs the same program twice, directly (``python -u probe.py MODE``)
and through a standby that imported modules first and was then handed the
worker's argv, environment, stdout, stderr and stack channel; every byte of
stdout and stderr and the exit status must be the same (the probe prints
argv, sys.path, sys.flags, ``__main__``, the environment's keys and more).
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rallypoint.config import Entrypoint, EntrypointKind
from rallypoint.workers.command import StackChannel, worker_argv
from rallypoint.workers.process import SpawnRequest
from rallypoint.workers.standby import Standby
from tests.conftest import REPO, WORKERS
from tests.harness import wait_until
from tests.integration.test_bootstrap import MODES

pytestmark = pytest.mark.integration

ROUND = "WARM_TEST_ROUND"  # a variable only the hand-over brings


def _direct(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


def _warm(entry: Entrypoint, env: dict[str, str], modules: tuple[str, ...]) -> tuple[int, str, str]:
    standby = Standby.spawn(0, worker_argv(entry, 0, {}), env, modules, nice=5)
    channel_read, channel_write = os.pipe()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    argv = worker_argv(entry, 0, {}, stacks=StackChannel(channel_write, 30.0))
    request = SpawnRequest(0, argv, {**env, ROUND: "1"}, out_write, err_write)
    worker = standby.take(request)
    for fd in (out_write, err_write, channel_write):
        os.close(fd)
    assert worker is not None
    assert worker.pid == standby.pid
    with os.fdopen(out_read) as out, os.fdopen(err_read) as err, os.fdopen(channel_read) as chan:
        stdout, stderr = out.read(), err.read()
        assert chan.readline().startswith("rallypoint-stacks 1 main 0x")
    return worker._popen.wait(timeout=120), stdout, stderr


@pytest.mark.parametrize("mode", MODES)
def test_script_runs_as_cold(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    script = str(WORKERS / "probe.py")
    entry = Entrypoint(EntrypointKind.SCRIPT, script, (mode, "$$x y"))
    env = dict(os.environ)
    warm = _warm(entry, env, ("json", "no_such_module_at_all"))
    assert warm == _direct([sys.executable, "-u", script, mode, "$x y"], {**env, ROUND: "1"})


@pytest.mark.parametrize("mode", ["", "raise", "exit3"])
def test_module_runs_as_cold(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    module = "tests.workers.probe_pkg"
    env = dict(os.environ)
    warm = _warm(Entrypoint(EntrypointKind.MODULE, module, (mode,)), env, ("json",))
    assert warm == _direct([sys.executable, "-u", "-m", module, mode], {**env, ROUND: "1"})


def test_imports_happen_before_and_the_script_is_read_at_the_hand_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helper.py").write_text("VERSION = 1\n")
    script = tmp_path / "main.py"
    script.write_text("print('old')\n")
    entry = Entrypoint(EntrypointKind.SCRIPT, str(script))
    env = dict(os.environ)
    standby = Standby.spawn(0, worker_argv(entry, 0, {}), env, ("helper",), nice=0)
    script.write_text(  # changed after the standby started: the new one must run
        "import sys\nprint('new', 'helper' in sys.modules)\nimport helper\nprint(helper.VERSION)\n"
        "import fresh\nprint(fresh.X)\n"
    )
    (tmp_path / "fresh.py").write_text("X = 'made after the warm-up'\n")
    out_read, out_write = os.pipe()
    worker = standby.take(SpawnRequest(0, worker_argv(entry, 0, {}), env, out_write, None))
    os.close(out_write)
    assert worker is not None
    with os.fdopen(out_read) as out:
        assert out.read() == "new True\n1\nmade after the warm-up\n"
    assert worker._popen.wait(timeout=60) == 0


def test_stderr_on_a_pseudo_terminal_is_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "tty.py"
    script.write_text(
        "import os, sys\n"
        "print(os.isatty(1), os.isatty(2), sys.stderr.isatty(), os.getsid(0) == os.getpid(),\n"
        "      os.getpgid(0) == os.getpid())\n"
        "try:\n    os.open('/dev/tty', os.O_RDWR)\nexcept OSError:\n    print('no ctty')\n"
    )
    entry = Entrypoint(EntrypointKind.SCRIPT, str(script))
    standby = Standby.spawn(0, worker_argv(entry, 0, {}), dict(os.environ), (), nice=0)
    primary, secondary = pty.openpty()
    out_read, out_write = os.pipe()
    worker = standby.take(
        SpawnRequest(0, worker_argv(entry, 0, {}), dict(os.environ), out_write, secondary)
    )
    os.close(out_write)
    os.close(secondary)
    assert worker is not None
    with os.fdopen(out_read) as out:
        assert out.read() == "False True True True True\nno ctty\n"
    assert worker._popen.wait(timeout=60) == 0
    os.close(primary)


def test_a_standby_that_died_is_not_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    entry = Entrypoint(EntrypointKind.SCRIPT, str(WORKERS / "probe.py"))
    standby = Standby.spawn(0, worker_argv(entry, 0, {}), dict(os.environ), (), nice=0)
    standby.kill()
    standby._popen.wait(timeout=30)
    request = SpawnRequest(0, worker_argv(entry, 0, {}), dict(os.environ))
    assert standby.take(request) is None


def test_ready_says_when_the_imports_are_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(1.5)\n")
    (tmp_path / "main.py").write_text("import sys\nprint('slow_import' in sys.modules)\n")
    entry = Entrypoint(EntrypointKind.SCRIPT, str(tmp_path / "main.py"))
    standby = Standby.spawn(0, worker_argv(entry, 0, {}), dict(os.environ), ("slow_import",), 0)
    try:
        assert not standby.ready()  # 1.5 s of imports ahead
        wait_until(standby.ready, timeout=60, what="the standby's imports")
        assert standby.ready()  # and it stays so
    finally:
        standby.kill()
        standby._popen.wait(timeout=30)


def test_a_hand_over_with_the_ready_byte_unread_still_runs_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our end closed with the standby's READY unread resets its end: that too ends the message."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "main.py").write_text("print('ran', 40 + 2)\n")
    entry = Entrypoint(EntrypointKind.SCRIPT, str(tmp_path / "main.py"))
    standby = Standby.spawn(0, worker_argv(entry, 0, {}), dict(os.environ), ("json",), 0)
    control = standby._control
    assert control is not None
    control.settimeout(60)
    assert control.recv(1, socket.MSG_PEEK) == b"R"  # said, and left unread
    monkeypatch.setattr(standby, "ready", lambda: False)
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    os.kill(standby.pid, signal.SIGSTOP)  # so it reads only after our end is closed
    worker = standby.take(SpawnRequest(0, worker_argv(entry, 0, {}), {}, out_write, err_write))
    os.kill(standby.pid, signal.SIGCONT)
    os.close(out_write)
    os.close(err_write)
    assert worker is not None
    with os.fdopen(out_read) as out, os.fdopen(err_read) as err:
        assert (out.read(), err.read()) == ("ran 42\n", "")
    assert worker._popen.wait(timeout=60) == 0
