"""Zero-flag Slurm: what a step task derives from Slurm's variables, and what always wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from rallypoint.cli.parser import parse_args
from rallypoint.cli.settings import Launch, build_launch
from rallypoint.cli.slurm import PORT_BASE, SlurmStep, derived_port, step_of
from rallypoint.errors import ConfigError
from tests.unit.test_settings import FakeDevices

STEP = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_ID": "3",
    "SLURM_NODEID": "1",
    "SLURM_STEP_NUM_NODES": "3",
    "SLURM_NNODES": "8",  # the allocation's: the step's count wins
    "SLURM_STEP_NODELIST": "gpu[007-008],login1",
    "SLURM_JOB_NODELIST": "gpu[001-008],login1",
    "SLURM_STEP_TASKS_PER_NODE": "1(x3)",
}


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "train.py"
    path.write_text("")
    return str(path)


def launch(args: list[str], env: dict[str, str]) -> Launch:
    return build_launch(parse_args(args, env), env, FakeDevices(), lambda: "uuid")


def test_a_step_task_with_no_flags_gets_its_whole_rendezvous(script: str) -> None:
    found = launch(["--nproc-per-node=2", script], STEP)
    config = found.config
    port = derived_port(step_of(STEP))  # type: ignore[arg-type]
    assert (config.min_nodes, config.max_nodes) == (3, 3)
    assert (config.rdzv_backend, config.rdzv_endpoint) == ("c10d", f"gpu007:{port}")
    assert config.run_id == "slurm-4242.3"
    assert config.rdzv_configs["is_host"] == "false"  # node 1; node 0 hosts the store
    assert config.forward_signals == "SIGUSR1,SIGUSR2"
    assert found.derived == (
        "--nnodes=3",
        "--rdzv-backend=c10d",
        "--rdzv-id=slurm-4242.3",
        f"--rdzv-endpoint=gpu007:{port}",
        "--forward-signals=SIGUSR1,SIGUSR2",
    )


def test_node_zero_hosts_the_store(script: str) -> None:
    config = launch([script], {**STEP, "SLURM_NODEID": "0"}).config
    assert config.rdzv_configs["is_host"] == "true"


def test_the_job_list_serves_when_the_step_list_is_missing(script: str) -> None:
    env = {k: v for k, v in STEP.items() if k not in ("SLURM_STEP_NODELIST",)}
    assert launch([script], env).config.rdzv_endpoint.startswith("gpu001:")


def test_two_steps_of_one_job_get_their_own_id_and_port(script: str) -> None:
    first = launch([script], STEP).config
    second = launch([script], {**STEP, "SLURM_STEP_ID": "4"}).config
    assert first.run_id != second.run_id
    assert first.rdzv_endpoint != second.rdzv_endpoint


def test_a_reserved_port_is_used(script: str) -> None:
    env = {**STEP, "SLURM_STEP_RESV_PORTS": "12001-12004"}
    assert launch([script], env).config.rdzv_endpoint == "gpu007:12001"


def test_derived_ports_stay_in_their_span() -> None:
    steps = [SlurmStep(job, step, 0, 2, "h", 1) for job in range(50) for step in (0, 1)]
    ports = {derived_port(step) for step in steps}
    assert min(ports) > PORT_BASE
    assert max(ports) <= PORT_BASE + 1000
    assert len(ports) == 100  # job ids 0-49, two steps each: no clash


@pytest.mark.parametrize(
    ("args", "env", "kept"),
    [
        (["--nnodes=2:3"], {}, {"nnodes": (2, 3)}),
        (["--rdzv-id=mine"], {}, {"run_id": "mine"}),
        ([], {"PET_RDZV_ID": "from-pet"}, {"run_id": "from-pet"}),
        (["--rdzv-endpoint=head:1234"], {}, {"rdzv_endpoint": "head:1234"}),
        ([], {"PET_NNODES": "1"}, {"nnodes": (1, 1)}),
        (["--forward-signals=SIGUSR2"], {}, {"forward_signals": "SIGUSR2"}),
        ([], {"PET_FORWARD_SIGNALS": ""}, {"forward_signals": ""}),
    ],
)
def test_a_flag_or_pet_variable_given_wins(
    script: str, args: list[str], env: dict[str, str], kept: dict[str, object]
) -> None:
    config = launch([*args, script], {**STEP, **env}).config
    for name, value in kept.items():
        got = (config.min_nodes, config.max_nodes) if name == "nnodes" else getattr(config, name)
        assert got == value
    assert config.rdzv_backend == "c10d"


@pytest.mark.parametrize(
    "args",
    [
        ["--master-addr=head", "--nnodes=3", "--node-rank=1"],
        ["--rdzv-backend=static", "--nnodes=3", "--node-rank=1"],
        ["--standalone"],
        ["--master-port=29500", "--nnodes=3", "--node-rank=1"],
    ],
)
def test_static_glue_or_standalone_turns_the_rendezvous_derivation_off(
    script: str, args: list[str]
) -> None:
    found = launch([*args, script], STEP)
    assert not found.config.run_id.startswith("slurm-")
    assert found.derived == ("--forward-signals=SIGUSR1,SIGUSR2",)


def test_etcd_given_keeps_its_endpoint_and_gets_nnodes_and_id(script: str) -> None:
    config = launch(["--rdzv-backend=etcd", "--rdzv-endpoint=etcd1:2379", script], STEP).config
    assert (config.rdzv_backend, config.rdzv_endpoint) == ("etcd", "etcd1:2379")
    assert (config.max_nodes, config.run_id) == (3, "slurm-4242.3")


def test_a_stop_signal_asked_for_is_not_also_a_notice(script: str) -> None:
    config = launch(["--signals-to-handle=SIGTERM,SIGUSR1", script], STEP).config
    assert config.forward_signals == "SIGUSR2"


def test_one_signal_as_both_notice_and_stop_is_refused(script: str) -> None:
    with pytest.raises(ConfigError, match="either a notice or a stop"):
        launch(["--forward-signals=SIGTERM", script], {})


def test_several_launchers_per_node_are_refused(script: str) -> None:
    env = {**STEP, "SLURM_STEP_TASKS_PER_NODE": "1,4(x2)"}
    with pytest.raises(ConfigError, match=r"4 tasks of step 4242\.3 on this node"):
        launch(["--nproc-per-node=4", script], env)
    assert launch([script], {**env, "SLURM_NODEID": "0"}).config.max_nodes == 3


def test_several_tasks_per_node_with_every_flag_given_are_the_users_choice(script: str) -> None:
    env = {**STEP, "SLURM_STEP_TASKS_PER_NODE": "2(x3)"}
    args = ["--nnodes=6", "--rdzv-backend=c10d", "--rdzv-endpoint=h:1", "--rdzv-id=x"]
    assert launch([*args, script], env).config.max_nodes == 6


@pytest.mark.parametrize(
    "env",
    [
        {},
        {k: v for k, v in STEP.items() if k != "SLURM_STEP_ID"},  # salloc shell, batch script
        {k: v for k, v in STEP.items() if k != "SLURM_NODEID"},
        {**STEP, "SLURM_STEP_ID": "batch"},
    ],
)
def test_outside_a_step_task_nothing_is_derived(script: str, env: dict[str, str]) -> None:
    found = launch([script], env)
    assert found.derived == ()
    assert (found.config.max_nodes, found.config.forward_signals) == (1, "")


def test_a_bad_node_list_is_refused_in_one_line(script: str) -> None:
    with pytest.raises(ConfigError, match="SLURM_STEP_NODELIST"):
        launch([script], {**STEP, "SLURM_STEP_NODELIST": "gpu[1-"})


@pytest.mark.parametrize(
    ("conf", "every"),
    [
        ("ProctrackType=proctrack/linuxproc\n", True),
        ("# ProctrackType=proctrack/linuxproc\nProctrackType=proctrack/cgroup\n", False),
        ("proctracktype = proctrack/linuxproc\n", True),  # Slurm's keys ignore case
        ("ProctrackType=proctrack/pgid\n", False),  # signals the task's group, not workers
        ("", False),  # configless, or no file: forward
    ],
)
def test_under_linuxproc_notices_are_noted_not_sent_twice(
    script: str, tmp_path: Path, conf: str, every: bool
) -> None:
    path = tmp_path / "slurm.conf"
    path.write_text(conf)
    config = launch([script], {**STEP, "SLURM_CONF": str(path)}).config
    assert config.notices_reach_workers is every
    assert config.forward_signals == "SIGUSR1,SIGUSR2"
