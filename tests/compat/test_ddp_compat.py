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
# C++ thread still joinable during teardown). Both launchers meet it: 3 in 25 runs under
# rallypoint, 1 in 25 under torchrun here, also with the model deleted before
# destroy_process_group; torch's own issue (pytorch/pytorch#179291 tried an atexit fix).
# That is torch's, not the launcher's: the pair is then run again, at most twice more.
TEARDOWN_ABORT = "terminate called without an active exception"
TRIES = 3


def _torch_teardown_abort(stderr: str) -> bool:
    return TEARDOWN_ABORT in stderr and "SIGABRT" in stderr


def test_ddp_example_trains_identically(tmp_path: Path, mark: str) -> None:
    script = REPO / "examples" / "ddp_train.py"
    env = base_env(tmp_path, mark)
    for _ in range(TRIES):
        outcomes = run_both(
            ["--standalone", "--nproc-per-node=2", str(script)],
            {"torchrun": env, "rallypoint": env},
            cwd=tmp_path,
            concurrent=False,  # four torch workers at once on two cores are needlessly slow
        )
        if not any(_torch_teardown_abort(o.stderr) for o in outcomes.values()):
            break
    lines = {}
    for name, outcome in outcomes.items():
        assert outcome.returncode == 0, outcome.describe()
        found = RESULT.findall(outcome.stdout)
        assert len(found) == 1, outcome.describe()
        lines[name] = found[0]
    assert lines["torchrun"].startswith("world=2 ")
    assert lines["rallypoint"] == lines["torchrun"]
