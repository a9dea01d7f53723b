"""The store at MASTER_ADDR:MASTER_PORT is the launcher's, under torchrun and rallypoint alike.

A script that opens ``TCPStore(MASTER_ADDR, MASTER_PORT, is_master=False)`` on every rank
before ``init_process_group`` (relying on the agent's store, as torchrun's workers may)
must work under both launchers, with 8 gloo workers, through ``env://`` and ``tcp://``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat._helpers import SCRIPTS, base_env, run_both

pytestmark = [pytest.mark.integration, pytest.mark.torch, pytest.mark.slow]


@pytest.mark.parametrize("method", ["env", "tcp"])
def test_the_agents_store_before_init_process_group(method: str, tmp_path: Path, mark: str) -> None:
    env = base_env(tmp_path, mark)
    outcomes = run_both(
        ["--nproc-per-node=8", str(SCRIPTS / "agent_store.py"), method],
        {"torchrun": env, "rallypoint": env},
        cwd=tmp_path,
        concurrent=False,
        timeout=240,
    )
    for outcome in outcomes.values():
        assert outcome.returncode == 0, outcome.describe()
        lines = [json.loads(line) for line in outcome.stdout.splitlines() if line.startswith("{")]
        assert sorted(line["rank"] for line in lines) == list(range(8)), outcome.describe()
        for line in lines:
            assert line["seen"] == ["0:8"] * 8
            assert line["sum"] == sum(range(8))
