"""The Python API: callables and programs per rank, results by global rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rallypoint import ChildFailedError, LaunchConfig, elastic_launch, launch
from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = pytest.mark.integration


def rank_times(scale: int) -> int:
    return scale * int(os.environ["RANK"]) + int(os.environ["WORLD_SIZE"])


def always_fails() -> None:
    raise RuntimeError("from the callable")


def config(**kw: object) -> LaunchConfig:
    return LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, max_restarts=0, **kw)  # type: ignore[arg-type]


def test_callable_results_by_rank() -> None:
    assert launch(config(), rank_times, 10) == {0: 2, 1: 12}


def test_program_entrypoint_returns_none_per_rank() -> None:
    assert elastic_launch(config(), "/bin/true")() == {0: None, 1: None}


def test_failing_callable_raises_with_its_traceback() -> None:
    with pytest.raises(ChildFailedError) as caught:
        launch(config(), always_fails)
    report = caught.value.report
    assert report.culprit.message == "RuntimeError: from the callable"
    assert "always_fails" in report.culprit.traceback


def test_callable_defined_in_a_main_script(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        "from rallypoint import LaunchConfig, launch\n"
        "def twice(x):\n    return 2 * x\n"
        "if __name__ == '__main__':\n"
        "    print(launch(LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2), twice, 4))\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "{0: 8, 1: 8}", result.stderr


def test_run_path_runs_the_script_as_main(mark: str, tmp_path: Path) -> None:
    script = tmp_path / "rp.py"
    script.write_text("import sys\nif __name__ == '__main__':\n    print('main', sys.argv[1:])\n")
    result = rallypoint(["--run-path", str(script), "$local_rank"], launcher_env(mark))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "main ['0']"


def test_run_path_failure_is_named_run_script_path(mark: str) -> None:
    result = rallypoint(["--run-path", str(WORKERS / "raise_error.py")], launcher_env(mark))
    assert result.returncode == 1
    assert "run_script_path FAILED" in result.stderr
    assert "error_file: " in result.stderr
    assert "error.json" in result.stderr


def _callers_handler(signum: int, frame: object) -> None:
    raise AssertionError(f"signal {signum} reached the test's handler")


def test_launch_puts_back_the_callers_signal_handlers() -> None:
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    before = {sig: signal.signal(sig, _callers_handler) for sig in handled}
    try:
        assert launch(config(), "/bin/true") == {0: None, 1: None}
        assert {sig: signal.getsignal(sig) for sig in handled} == dict.fromkeys(
            handled, _callers_handler
        )
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
