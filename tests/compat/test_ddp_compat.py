"""examples/ddp_train.py trains the same under rallypoint as under torchrun."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.compat._helpers import REPO, base_env, run_both

pytestmark = [pytest.mark.integration, pytest.mark.torch]

RESULT = re.compile(r"^world=\d+ loss=-?\d+\.\d+ checksum=-?\d+\.\d+$", re.MULTILINE)


# torch 2.13's gloo sometimes aborts a worker at interpreter exit, after the script has
# finished and printed its result ("terminate called without an active exception": a
# C++ thread still joinable during teardown; seen under torchrun on a loaded machine).
# That is torch's, not the launcher's: torchrun's run is then taken again, once.
TEARDOWN_ABORT = "terminate called without an active exception"


def _torch_teardown_abort(stderr: str) -> bool:
    return TEARDOWN_ABORT in stderr and "SIGABRT" in stderr


def test_ddp_example_trains_identically(tmp_path: Path, mark: str) -> None:
    script = REPO / "examples" / "ddp_train.py"
    env = base_env(tmp_path, mark)
    for _ in range(2):
        outcomes = run_both(
            ["--standalone", "--nproc-per-node=2", str(script)],
            {"torchrun": env, "rallypoint": env},
            cwd=tmp_path,
            concurrent=False,  # four torch workers at once on two cores are needlessly slow
        )
        if not _torch_teardown_abort(outcomes["torchrun"].stderr):
            break
    lines = {}
    for name, outcome in outcomes.items():
        assert outcome.returncode == 0, outcome.describe()
        found = RESULT.findall(outcome.stdout)
        assert len(found) == 1, outcome.describe()
        lines[name] = found[0]
    assert lines["torchrun"].startswith("world=2 ")
    assert lines["rallypoint"] == lines["torchrun"]
