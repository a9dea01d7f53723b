"""`rallypoint --dry-run`: prints the plan, starts nothing, exits 0 (or 2 for bad input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rallypoint.workers.command import BOOTSTRAP
from tests.conftest import launcher_env, rallypoint

pytestmark = pytest.mark.integration


def test_dry_run_prints_the_plan_and_starts_nothing(mark: str, tmp_path: Path) -> None:
    touched = tmp_path / "ran"
    script = tmp_path / "train.py"
    script.write_text(f"open({str(touched)!r}, 'w').close()\n")
    logs = tmp_path / "logs"
    args = ["--dry-run", "--nproc-per-node=2", f"--log-dir={logs}", str(script), "$local_rank"]
    result = rallypoint(args, launcher_env(mark), timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("rallypoint: dry run, nothing was started\n")
    assert "\nlocal rank 0: " in out
    assert f" -u {BOOTSTRAP} - 0 script {script} 1\n" in out  # via the bootstrap
    assert "  WORLD_SIZE=2\n" in out
    assert "  TORCHELASTIC_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT\n" in out
    assert not touched.exists()
    assert not logs.exists()


def test_dry_run_still_refuses_bad_input(mark: str, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("")
    result = rallypoint(["--dry-run", "--master-port=99999", str(script)], launcher_env(mark))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
