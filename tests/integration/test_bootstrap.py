"""The worker bootstrap runs a program exactly as ``python -u`` would.

Each case runs the same program twice, directly (``python -u probe.py MODE``
or ``python -u -m probe_pkg MODE``) and through the command rallypoint gives
its workers, with a live stack channel, and compares every byte of stdout and
stderr and the exit status. The probe prints argv, sys.path, sys.flags, every
dunder of ``__main__`` and more before it ends as MODE says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rallypoint.config import Entrypoint, EntrypointKind
from rallypoint.workers.command import StackChannel, worker_argv
from tests.conftest import REPO, WORKERS

pytestmark = pytest.mark.integration

MODES = ["", "raise", "exit3", "exitmsg", "interrupt", "excepthook", "warn", "spawn"]


def _run(argv: list[str], cwd: Path, pass_fds: tuple[int, ...] = ()) -> tuple[int, str, str]:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, pass_fds=pass_fds
    )
    return done.returncode, done.stdout, done.stderr


def _both(entry: Entrypoint, direct: list[str], cwd: Path) -> tuple[tuple[int, str, str], ...]:
    read_fd, write_fd = os.pipe()
    try:
        argv = worker_argv(entry, 0, {}, stacks=StackChannel(write_fd, 30.0))
        through = _run(argv, cwd, (write_fd,))
    finally:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as channel:
            header = channel.readline()
    assert header.startswith(b"rallypoint-stacks 1 main 0x"), header
    return _run(direct, cwd), through


@pytest.mark.parametrize("mode", MODES)
def test_script_runs_as_under_plain_python(mode: str, tmp_path: Path) -> None:
    script = str(WORKERS / "probe.py")
    entry = Entrypoint(EntrypointKind.SCRIPT, script, (mode, "$$x y"))
    direct, through = _both(entry, [sys.executable, "-u", script, mode, "$x y"], tmp_path)
    assert through == direct
    assert direct[0] == {
        "raise": 1,
        "exit3": 3,
        "exitmsg": 1,
        "interrupt": -2,
        "excepthook": 1,
    }.get(mode, 0)
    if mode in ("raise", "interrupt"):
        assert "Traceback (most recent call last):" in direct[2]
    if mode == "spawn":
        assert '["child", "__mp_main__", ' in direct[1]


@pytest.mark.parametrize("mode", ["", "raise", "exit3", "interrupt", "spawn"])
def test_module_runs_as_under_plain_python(mode: str) -> None:
    module = "tests.workers.probe_pkg"
    entry = Entrypoint(EntrypointKind.MODULE, module, (mode,))
    direct, through = _both(entry, [sys.executable, "-u", "-m", module, mode], REPO)
    assert through == direct


def test_relative_and_symlinked_script(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "probe.py").write_text((WORKERS / "probe.py").read_text())
    (tmp_path / "link.py").symlink_to(tmp_path / "real" / "probe.py")
    for script in ("link.py", "./real/probe.py"):
        entry = Entrypoint(EntrypointKind.SCRIPT, script, ("raise",))
        direct, through = _both(entry, [sys.executable, "-u", script, "raise"], tmp_path)
        assert through == direct


@pytest.mark.parametrize(
    "source",
    [
        "def broken(:\n    pass\n",
        "# -*- coding: latin-1 -*-\nprint('\xe9')\n",
        "x = 1 +\n",
        "def f(x: Undefined) -> None:\n    pass\n",  # no __future__ of the bootstrap's
    ],
    ids=["syntax-error", "latin-1", "incomplete", "annotations-evaluated"],
)
def test_source_quirks(source: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.py"
    path.write_bytes(source.encode("latin-1"))
    entry = Entrypoint(EntrypointKind.SCRIPT, str(path))
    direct, through = _both(entry, [sys.executable, "-u", str(path)], tmp_path)
    assert through == direct


def test_missing_script_and_module(tmp_path: Path) -> None:
    for kind, target, direct_argv in [
        (EntrypointKind.SCRIPT, "nope.py", [sys.executable, "-u", "nope.py"]),
        (EntrypointKind.MODULE, "nope_mod", [sys.executable, "-u", "-m", "nope_mod"]),
    ]:
        direct, through = _both(Entrypoint(kind, target), direct_argv, tmp_path)
        assert through == direct
        assert direct[0] in (1, 2)


def test_folder_with_main_runs_as_under_plain_python(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "__main__.py").write_text("import sys\nprint(sys.argv, sys.path[0], __name__)\n")
    entry = Entrypoint(EntrypointKind.SCRIPT, "app", ("1",))
    direct, through = _both(entry, [sys.executable, "-u", "app", "1"], tmp_path)
    assert through == direct


def test_channel_is_not_inherited_by_the_workers_children(tmp_path: Path) -> None:
    script = tmp_path / "fds.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "code = 'import os; print(sorted(int(f) for f in os.listdir(\"/proc/self/fd\")))'\n"
        "subprocess.run([sys.executable, '-c', code], close_fds=False, check=True)\n"
    )
    entry = Entrypoint(EntrypointKind.SCRIPT, str(script))
    direct, through = _both(entry, [sys.executable, "-u", str(script)], tmp_path)
    assert through == direct


def test_compiled_script_runs_as_under_plain_python(tmp_path: Path) -> None:
    import py_compile

    source = tmp_path / "prog.py"
    source.write_text(
        "import sys\nprint(__file__, __loader__.__class__.__name__)\nraise SystemExit(4)\n"
    )
    compiled = str(tmp_path / "prog.pyc")
    py_compile.compile(str(source), cfile=compiled, doraise=True)
    entry = Entrypoint(EntrypointKind.SCRIPT, compiled)
    direct, through = _both(entry, [sys.executable, "-u", compiled], tmp_path)
    assert through == direct
    assert direct[0] == 4


@pytest.mark.torch
@pytest.mark.slow
def test_sampling_every_5_ms_through_import_torch_never_crashes(tmp_path: Path) -> None:
    """faulthandler's own periodic dump crashed this 6 times in 6 (see _bootstrap.py)."""
    script = tmp_path / "imports.py"
    script.write_text("import torch, torch.distributed, unittest, asyncio, email.mime.text\n")
    for _ in range(2):
        read_fd, write_fd = os.pipe()
        argv = worker_argv(
            Entrypoint(EntrypointKind.SCRIPT, str(script)),
            0,
            {},
            stacks=StackChannel(write_fd, 0.005),
        )
        proc = subprocess.Popen(argv, pass_fds=(write_fd,), cwd=tmp_path)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as channel:
            samples = channel.read().count(b"\nSample (")
        assert proc.wait(timeout=120) == 0
        assert samples > 10


@pytest.mark.parametrize("source", ["def broken(:\n    pass\n", "x = 1 +\n"])
def test_a_syntax_error_without_site_exits_1_as_python_does(source: str, tmp_path: Path) -> None:
    """Under ``-S`` (as in a fresh venv) few objects refer to None: no crash at exit."""
    path = tmp_path / "odd.py"
    path.write_text(source)
    argv = worker_argv(Entrypoint(EntrypointKind.SCRIPT, str(path)), 0, {})
    assert argv[0] == sys.executable
    through = _run([argv[0], "-S", *argv[1:]], tmp_path)
    direct = _run([sys.executable, "-S", "-u", str(path)], tmp_path)
    assert "Fatal Python error" not in through[2]
    assert through == direct
    assert through[0] == 1
