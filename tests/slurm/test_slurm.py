"""rallypoint under a real Slurm cluster: zero flags, steps that never meet, notices, scancel.

Every launch is ``srun`` from the controller's namespace, as a user on a login node would type
it; the tasks run in the nodes' namespaces under slurmstepd. Workers reach each other with gloo
on ``eth0`` (GLOO_SOCKET_IFNAME). Measured figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, WORKERS
from tests.slurm.cluster import SlurmCluster, job_id

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
RALLYPOINT = [sys.executable, "-m", "rallypoint"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
ALLREDUCE = str(REPO / "tests" / "multinode" / "scripts" / "allreduce.py")
WHOAMI = str(REPO / "tests" / "slurm" / "scripts" / "whoami.py")
TAKER = str(WORKERS / "notice_taker.py")
ELASTIC = str(REPO / "tests" / "multinode" / "scripts" / "elastic.py")
GLUE = (  # torchrun reads PET_<FLAG> for every flag it was not given
    'M=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1); '
    'export PET_NNODES="$SLURM_NNODES" PET_NODE_RANK="$SLURM_NODEID" '
    'PET_MASTER_ADDR="$M" PET_MASTER_PORT=29500; exec "$@"'
)
RANK_KEYS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "ROLE_WORLD_SIZE",
    "sum",
)


def env_for(folder: Path, **extra: str) -> dict[str, str]:
    return {
        "OUT_DIR": str(folder),
        "RECORD_DIR": str(folder),
        "GLOO_SOCKET_IFNAME": "eth0",
        "PYTHONPATH": f"{REPO / 'src'}:{REPO}",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def with_glue(launcher: list[str]) -> list[str]:
    """``bash -c GLUE launcher...``: the usual hand-written Slurm glue around ``launcher``."""
    return ["bash", "-c", GLUE, "glue", *launcher]


def results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def ranks(found: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return sorted(tuple(r[k] for k in RANK_KEYS) for r in found)


def srun(
    cluster: SlurmCluster,
    argv: list[str],
    folder: Path,
    *opts: str,
    timeout: float = 180,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = cluster.client(
        ["srun", "-N2", "--ntasks-per-node=1", *opts, *argv], env_for(folder, **extra), timeout
    )
    print(
        f"srun {' '.join(argv[:4])}...: rc {done.returncode} in {time.monotonic() - started:.1f} s"
    )
    return done


def test_zero_flag_srun_gives_the_sums_and_ranks_torchrun_gives_with_glue(
    slurm_cgroup: SlurmCluster, tmp_path: Path
) -> None:
    ours, theirs = tmp_path / "rallypoint", tmp_path / "torchrun"
    ours.mkdir()
    theirs.mkdir()
    done = srun(slurm_cgroup, [*RALLYPOINT, "--nproc-per-node=2", ALLREDUCE], ours)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("running as a Slurm step task, so using --nnodes=2") == 2
    found = results(ours)
    assert [r["sum"] for r in found] == [10.0] * 4  # 1 + 2 + 3 + 4
    assert {r["RANK"] for r in found} == {"0", "1", "2", "3"}
    glued = srun(slurm_cgroup, with_glue([*TORCHRUN, "--nproc-per-node=2", ALLREDUCE]), theirs)
    assert glued.returncode == 0, glued.stderr
    assert ranks(found) == ranks(results(theirs))


def test_two_steps_of_one_allocation_at_once_do_not_meet(
    slurm_cgroup: SlurmCluster, tmp_path: Path
) -> None:
    granted = slurm_cgroup.client(["salloc", "-N2", "--no-shell"])
    job = job_id(granted.stderr + granted.stdout)
    try:
        argv = [
            "srun",
            f"--jobid={job}",
            "--overlap",
            "-N2",
            "--ntasks-per-node=1",
            *RALLYPOINT,
            "--nproc-per-node=1",
            WHOAMI,
        ]
        steps = [slurm_cgroup.start_client(argv, env_for(tmp_path, HOLD="3")) for _ in range(2)]
        outcomes = [step.communicate(timeout=120) for step in steps]
        assert [s.returncode for s in steps] == [0, 0], outcomes
    finally:
        slurm_cgroup.client(["scancel", str(job)])
    found = results(tmp_path)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for seen in found:
        by_run.setdefault(str(seen["TORCHELASTIC_RUN_ID"]), []).append(seen)
    assert sorted(by_run) == [f"slurm-{job}.0", f"slurm-{job}.1"]
    for one_step in by_run.values():
        assert sorted((s["RANK"], s["WORLD_SIZE"]) for s in one_step) == [("0", "2"), ("1", "2")]
    first, second = by_run.values()
    assert max(float(s["began"]) for s in first) < min(float(s["ended"]) for s in second)
    assert max(float(s["began"]) for s in second) < min(float(s["ended"]) for s in first)


def start_takers(
    cluster: SlurmCluster, launcher: list[str], folder: Path, **extra: str
) -> tuple[subprocess.Popen[str], int]:
    """srun the notice takers under ``launcher``; return srun and the job id once all wait."""
    name = f"t{uuid.uuid4().hex[:8]}"
    argv = ["srun", "-N2", "--ntasks-per-node=1", f"--job-name={name}", *launcher, TAKER]
    step = cluster.start_client(argv, env_for(folder, **extra))
    deadline = time.monotonic() + 90
    while len(list(folder.glob("*.ready"))) < 4:
        if step.poll() is not None or time.monotonic() > deadline:
            step.kill()
            raise AssertionError(f"the workers did not start: {step.communicate()}")
        time.sleep(0.05)
    listed = cluster.client(["squeue", "-h", "-n", name, "-o", "%i"]).stdout.split()
    return step, int(listed[0])


def logged(folder: Path) -> dict[str, list[str]]:
    """Per rank, the signal names its worker logged (senders left out)."""
    return {
        p.stem: [line.split()[0] for line in p.read_text().splitlines()]
        for p in sorted(folder.glob("*.log"))
    }


def test_usr1_on_the_step_reaches_every_worker_once_and_the_job_finishes(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    launcher = [*RALLYPOINT, "--nproc-per-node=2"]
    step, job = start_takers(slurm, launcher, tmp_path, NOTICE_THEN_EXIT="2")
    sent = time.monotonic()
    slurm.client(["scancel", "--signal=USR1", f"{job}.0"])
    _, err = step.communicate(timeout=120)
    print(
        f"{slurm.proctrack}: srun rc {step.returncode} {time.monotonic() - sent:.1f} s after USR1"
    )
    assert step.returncode == 0, err
    assert logged(tmp_path) == {r: ["SIGUSR1"] for r in ("0", "1", "2", "3")}, err
    said = "passed on to 2 workers" if slurm.proctrack == "cgroup" else "gave it to the 2 workers"
    assert err.count(said) == 2, err
    assert slurm.wait_idle(30) == []


def stuck_workers(folder: Path) -> dict[str, str]:
    """Per rank whose worker still runs: its state and signal masks, from /proc."""
    found = {}
    for ready in folder.glob("*.ready"):
        status = Path(f"/proc/{ready.read_text()}/status")
        if status.exists():
            keep = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "PPid")
            lines = [ln for ln in status.read_text().splitlines() if ln.startswith(keep)]
            found[ready.stem] = "; ".join(lines)
    return found


def scancelled(cluster: SlurmCluster, argv: list[str], folder: Path, label: str) -> tuple[int, str]:
    """srun the takers under ``argv``, scancel the job once they wait: srun's rc and stderr."""
    folder.mkdir()
    step, job = start_takers(cluster, argv, folder)
    sent = time.monotonic()
    cluster.client(["scancel", str(job)])
    try:
        _, err = step.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        stuck = stuck_workers(folder)
        _, err = step.communicate(timeout=120)
        err += f"\nworkers still there 5 s after scancel: {stuck}"
    took = time.monotonic() - sent
    print(f"{cluster.proctrack} {label}: srun rc {step.returncode} {took:.1f} s after scancel")
    last = {rank: tuple(signals[-1:]) for rank, signals in logged(folder).items()}
    assert last == dict.fromkeys(("0", "1", "2", "3"), ("SIGTERM",)), err
    assert cluster.wait_idle(30) == []
    return step.returncode, err


def test_scancel_stops_the_workers_with_sigterm_as_torchrun_and_leaves_nothing(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    rallypoint = [*RALLYPOINT, "--nproc-per-node=2"]
    ours, err = scancelled(slurm, rallypoint, tmp_path / "rallypoint", "rallypoint")
    glued = with_glue([*TORCHRUN, "--nproc-per-node=2"])
    theirs, _ = scancelled(slurm, glued, tmp_path / "torchrun", "torchrun")
    assert ours == theirs, err
    if slurm.proctrack == "cgroup":
        assert "received SIGTERM: the workers were stopped" in err


def test_sbatch_with_the_zero_flag_form_inside(slurm_cgroup: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1\n"
        f"srun {' '.join(RALLYPOINT)} --nproc-per-node=2 {WHOAMI}\n"
    )
    started = time.monotonic()
    done = slurm_cgroup.client(
        ["sbatch", "--wait", f"--output={tmp_path / 'out.txt'}", str(script)],
        env_for(tmp_path),
    )
    print(f"sbatch --wait: rc {done.returncode} in {time.monotonic() - started:.1f} s")
    out = (tmp_path / "out.txt").read_text() if (tmp_path / "out.txt").exists() else ""
    assert done.returncode == 0, done.stderr + out
    found = results(tmp_path)
    assert sorted((s["RANK"], s["WORLD_SIZE"], s["GROUP_WORLD_SIZE"]) for s in found) == [
        (str(r), "4", "2") for r in range(4)
    ]
    assert out.count("running as a Slurm step task") == 2


def agent_on(cluster: SlurmCluster, index: int) -> int:
    """The pid of the rallypoint agent slurmstepd started on node ``index``."""
    for pid in cluster.pids_in(cluster.node(index)):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            comm = Path(f"/proc/{parent}/comm").read_text().strip()
            if argv[1:3] == [b"-m", b"rallypoint"] and comm.startswith("slurmstepd"):
                return pid
    raise AssertionError(f"no rallypoint agent on node {index}")


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_agent_sigkilled_in_an_elastic_srun_job_and_the_others_go_on(
    slurm_cgroup: SlurmCluster, tmp_path: Path
) -> None:
    argv = [
        "srun",
        "-N3",
        "--ntasks-per-node=1",
        *RALLYPOINT,
        "--nnodes=2:3",
        "--nproc-per-node=1",
        "--max-restarts=3",
        ELASTIC,
    ]
    step = slurm_cgroup.start_client(argv, env_for(tmp_path, STEPS="150"))
    deadline = time.monotonic() + 120
    while len(jsonl(tmp_path / "joined.jsonl")) < 3:
        assert step.poll() is None, step.communicate()
        assert time.monotonic() < deadline, "the three nodes did not start"
        time.sleep(0.1)
    killed = time.time()
    os.kill(agent_on(slurm_cgroup, 3), signal.SIGKILL)  # node 3 does not host the store
    _, err = step.communicate(timeout=180)
    finished = jsonl(tmp_path / "finished.jsonl")
    rejoined = [j for j in jsonl(tmp_path / "joined.jsonl") if j["WORLD_SIZE"] == "2"]
    if rejoined:
        print(f"node 3's agent SIGKILLed: world 2 again {rejoined[0]['time'] - killed:.1f} s later")
    assert sorted(f["WORLD_SIZE"] for f in finished) == ["2", "2"], err
    assert "task 2: Killed" in err
    assert slurm_cgroup.wait_idle(30) == []
