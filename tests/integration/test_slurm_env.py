"""A launcher given only Slurm's variables (no cluster): the lines the CLI prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import launcher_env, rallypoint

pytestmark = pytest.mark.integration
STEP = {
    "SLURM_JOB_ID": "5",
    "SLURM_STEP_ID": "2",
    "SLURM_NODEID": "1",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NODELIST": "gpu[09-10]",
}


def test_several_launchers_per_node_get_one_line_and_exit_2(mark: str, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("")
    env = launcher_env(mark, **STEP, SLURM_STEP_TASKS_PER_NODE="4(x2)")
    done = rallypoint(["--nproc-per-node=4", str(script)], env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "rallypoint: error: Slurm runs 4 tasks of step 5.2 on this node, each a full launcher "
        "starting its own workers; run one task per node (srun --ntasks-per-node=1) and give "
        "the worker count with --nproc-per-node (see rallypoint --help)"
    ]


def test_dry_run_shows_what_the_step_gave(mark: str, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("")
    done = rallypoint(["--dry-run", str(script)], launcher_env(mark, **STEP))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("rallypoint: running as a Slurm step task, so using --nnodes=2 ")
    lines = done.stdout.split("configuration:\n")[1].split("each local rank")[0].splitlines()
    settings = dict(line.split(None, 1) for line in lines)
    assert settings["run_id"] == "slurm-5.2"
    assert settings["rdzv_endpoint"].startswith("gpu09:")
    assert settings["forward_signals"] == "SIGUSR1,SIGUSR2"
