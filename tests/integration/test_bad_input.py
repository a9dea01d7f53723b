"""Bad input: one line on stderr naming the problem, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = pytest.mark.integration

SCRIPT = str(WORKERS / "exit_code.py")
C10D = ["--nnodes=2", "--rdzv-backend=c10d"]
ETCD = ["--nnodes=2", "--rdzv-backend=etcd"]

CASES = [
    (["--nnodes=3:2", SCRIPT], "--nnodes=3:2"),
    (["--nnodes=0", SCRIPT], "--nnodes=0"),
    (["--nnodes=1:2:3", SCRIPT], "--nnodes=1:2:3"),
    (["--nproc-per-node=0", SCRIPT], "--nproc-per-node"),
    (["--nproc-per-node=abc", SCRIPT], "--nproc-per-node=abc"),
    (["--max-restarts=-1", SCRIPT], "--max-restarts"),
    (["--rdzv-conf=a", SCRIPT], "--rdzv-conf=a"),
    (["--rdzv-conf=k=", SCRIPT], "--rdzv-conf=k="),
    (["-m", "--no-python", SCRIPT], "--no-python"),
    (["/nonexistent/train.py"], "/nonexistent/train.py"),
    (["--nproc-per-node=gpu", SCRIPT], "--nproc-per-node=gpu"),
    (["--no-such-flag", SCRIPT], "--no-such-flag"),
    (["--max-restarts=x", SCRIPT], "--max-restarts"),
    (["--redirects=9", SCRIPT], "--redirects=9"),
    # issue 8: these gave tracebacks (ValueError, OverflowError, OSError) or ran the job
    ([*C10D, "--rdzv-endpoint=host:abc", SCRIPT], "--rdzv-endpoint=host:abc"),
    ([*C10D, "--rdzv-endpoint=host:99999", SCRIPT], "--rdzv-endpoint=host:99999"),
    (["--master-addr=127.0.0.1", "--master-port=99999", SCRIPT], "--master-port=99999"),
    (["--signals-to-handle=SIGTERM,SIGKILL", SCRIPT], "SIGKILL cannot be caught"),
    (["--signals-to-handle=SIGTERM,NOSUCH", SCRIPT], "'NOSUCH' is not a signal name"),
    (["--logs-specs=NOSUCH", SCRIPT], "torchrun.logs_specs[NOSUCH]"),
    ([*ETCD, "--rdzv-endpoint=h:99999", SCRIPT], "--rdzv-endpoint=h:99999"),
    ([*ETCD, "--rdzv-endpoint=h", "--rdzv-conf=protocol=ftp", SCRIPT], "protocol=ftp"),
    ([*C10D, "--rdzv-endpoint=[::1", SCRIPT], "--rdzv-endpoint=[::1"),
    (["--nnodes=1\n2", SCRIPT], "--nnodes=1\\n2"),  # a newline cannot split the line
    ([*C10D, "--rdzv-endpoint=localhost:0", "--rdzv-conf=join_timeout=x", SCRIPT], "join_timeout"),
    ([], "training_script"),
]


@pytest.mark.parametrize(
    ("args", "named"),
    CASES,
    ids=[" ".join(c[0][:-1]) or c[0][0] for c in CASES[:-1]] + ["no-script"],
)
def test_bad_input_is_one_line_and_exit_2(mark: str, args: list[str], named: str) -> None:
    result = rallypoint(args, launcher_env(mark, CUDA_VISIBLE_DEVICES=""), timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert named in lines[0]
    assert lines[0].startswith("rallypoint: error: ")


def test_bad_pet_value_names_the_variable(mark: str) -> None:
    env = launcher_env(mark, PET_STANDALONE="true")
    result = rallypoint([SCRIPT], env, timeout=30)
    assert result.returncode == 2
    assert "PET_STANDALONE='true'" in result.stderr


def test_unknown_logs_specs_is_refused_before_anything_starts(mark: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = launcher_env(mark, CUDA_VISIBLE_DEVICES="")
    result = rallypoint(["--logs-specs=NOSUCH", f"--log-dir={logs}", "-t3", SCRIPT], env)
    assert result.returncode == 2, result.stderr
    assert not logs.exists()  # no run folder, so no worker ever started
    assert result.stdout == ""
    ok = rallypoint(["--logs-specs=default", f"--log-dir={logs}", SCRIPT], env)
    assert ok.returncode == 1  # exit_code.py exits 3: the job ran
    assert list(logs.iterdir())
