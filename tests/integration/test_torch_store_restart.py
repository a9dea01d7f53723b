"""A restarted gloo group never reads a key of the attempt before (the agent's torch store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint

pytestmark = [pytest.mark.integration, pytest.mark.torch]


@pytest.mark.parametrize("run", range(3))
def test_save_crash_restore_never_reads_the_previous_attempts_keys(
    mark: str, tmp_path: Path, run: int
) -> None:
    args = ["--nproc-per-node=3", "--max-restarts=1", str(WORKERS / "gloo_crash_restore.py")]
    done = rallypoint([*args, str(tmp_path)], launcher_env(mark), timeout=240)
    assert done.returncode == 0, done.stderr
    records = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*_*.json")}
    assert {f"1_{r}" for r in range(3)} <= set(records), sorted(records)
    assert {record["sum"] for record in records.values()} == {6.0}
    assert [name for name, record in records.items() if record["leaked"]] == [], run


def test_worker_rank_0_hosts_torchs_store_when_asked(mark: str, tmp_path: Path) -> None:
    env = launcher_env(mark, OUT_DIR=str(tmp_path), TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    script = Path(__file__).parents[1] / "multinode" / "scripts" / "allreduce.py"
    done = rallypoint(["--nproc-per-node=2", str(script)], env, timeout=240)
    assert done.returncode == 0, done.stderr
    seen = [json.loads(p.read_text()) for p in tmp_path.glob("0_*.json")]
    assert {r["sum"] for r in seen} == {3.0}
    assert len({r["MASTER_PORT"] for r in seen}) == 1
