"""The launcher process never imports torch (the workers may; these do not)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat._helpers import RALLYPOINT, SCRIPTS, base_env

pytestmark = [pytest.mark.integration, pytest.mark.torch]

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)\s*$")


def test_importing_the_cli_and_api_does_not_import_torch(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import rallypoint.cli.main, rallypoint.api, sys; print('torch' in sys.modules)",
        ],
        env=base_env(tmp_path, "unused"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "False\n"


def test_launcher_process_imports_no_torch_module(tmp_path: Path, mark: str) -> None:
    env = base_env(tmp_path, mark, COMPAT_DUMP_DIR=str(tmp_path))
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "rallypoint",
            "--standalone",
            "--nproc-per-node=1",
            str(SCRIPTS / "noop.py"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran0").exists()  # the (torch-free) worker really ran
    # -X importtime is not passed on to workers, so every line is the launcher's.
    modules = [m.group(2) for m in map(IMPORT_LINE.match, done.stderr.splitlines()) if m]
    assert "rallypoint.cli.main" in modules  # the report is really there
    torch_modules = [m for m in modules if m == "torch" or m.startswith("torch.")]
    assert not torch_modules, torch_modules


def test_successful_launch_prints_no_python_warning_or_traceback(tmp_path: Path, mark: str) -> None:
    """torchrun's stderr on success holds only its OMP notice; rallypoint's must not
    carry Python warnings (e.g. an un-awaited coroutine) or tracebacks either."""
    env = base_env(tmp_path, mark, COMPAT_DUMP_DIR=str(tmp_path))
    done = subprocess.run(
        [*RALLYPOINT, "--standalone", "--nproc-per-node=2", str(SCRIPTS / "noop.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran0").exists()
    assert (tmp_path / "ran1").exists()
    assert "Traceback" not in done.stderr, done.stderr
    assert "Warning" not in done.stderr, done.stderr
