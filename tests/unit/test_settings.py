"""From flags to a launch: backend auto-selection, nproc, entrypoint, environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rallypoint.cli.parser import parse_args
from rallypoint.cli.settings import Launch, build_launch, resolve_nproc
from rallypoint.config import EntrypointKind
from rallypoint.devices import DeviceCounter
from rallypoint.errors import ConfigError


@dataclass(frozen=True)
class FakeDevices:
    gpu_count: int = 0
    cpu_count: int = 2

    def gpus(self) -> int:
        return self.gpu_count

    def cpus(self) -> int:
        return self.cpu_count


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "train.py"
    path.write_text("")
    return str(path)


def launch(
    args: list[str], env: dict[str, str] | None = None, devices: DeviceCounter | None = None
) -> Launch:
    env = env or {}
    return build_launch(parse_args(args, env), env, devices or FakeDevices(), lambda: "uuid")


def test_plain_single_node_switches_to_c10d_with_a_fresh_id(script: str) -> None:
    config = launch(["--rdzv-id=mine", script]).config
    assert (config.rdzv_backend, config.rdzv_endpoint, config.run_id) == (
        "c10d",
        "localhost:0",
        "uuid",
    )


def test_master_port_keeps_static(script: str) -> None:
    config = launch(["--master-port=1234", "--rdzv-id=mine", script]).config
    assert (config.rdzv_backend, config.run_id, config.master_port) == ("static", "mine", 1234)
    assert config.rdzv_configs["rank"] == "0"
    assert config.rdzv_configs["timeout"] == "900"


def test_standalone_overrides_backend_endpoint_and_id(script: str) -> None:
    config = launch(["--standalone", "--rdzv-backend=etcd", "--rdzv-endpoint=h:1", script]).config
    assert (config.rdzv_backend, config.rdzv_endpoint, config.run_id) == (
        "c10d",
        "localhost:0",
        "uuid",
    )


def test_static_endpoint_wins_over_master_flags(script: str) -> None:
    config = launch(
        ["--rdzv-backend=static", "--rdzv-endpoint=10.0.0.1:777", "--master-addr=x", script]
    ).config
    assert (config.master_addr, config.master_port) == ("10.0.0.1", 777)


@pytest.mark.parametrize(
    ("text", "gpus", "expected"),
    [("4", 0, 4), ("cpu", 0, 2), ("gpu", 3, 3), ("auto", 0, 2), ("auto", 8, 8)],
)
def test_nproc(text: str, gpus: int, expected: int) -> None:
    assert resolve_nproc(text, FakeDevices(gpu_count=gpus)) == expected


def test_gpu_without_gpus_is_refused() -> None:
    with pytest.raises(ConfigError, match="no GPU"):
        resolve_nproc("gpu", FakeDevices(gpu_count=0))


def test_omp_threads_set_only_when_unset_and_several_workers(script: str) -> None:
    assert launch(["--nproc-per-node=2", script]).worker_base_env["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in launch([script]).worker_base_env
    kept = launch(["--nproc-per-node=2", script], {"OMP_NUM_THREADS": "7"})
    assert kept.worker_base_env["OMP_NUM_THREADS"] == "7"
    assert not kept.omp_threads_defaulted


def test_signals_reach_the_workers_environment(script: str) -> None:
    env = launch(["--signals-to-handle=SIGUSR1", script]).worker_base_env
    assert env["TORCHELASTIC_SIGNALS_TO_HANDLE"] == "SIGUSR1"


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ([], EntrypointKind.SCRIPT),
        (["-m"], EntrypointKind.MODULE),
        (["--run-path"], EntrypointKind.RUN_PATH),
        (["--run-path", "--no-python"], EntrypointKind.RUN_PATH),
    ],
)
def test_entrypoint_kind(script: str, flags: list[str], kind: EntrypointKind) -> None:
    assert launch([*flags, script]).entrypoint.kind is kind


def test_shutdown_timeout_from_env_and_flag(script: str) -> None:
    assert launch([script]).config.shutdown_timeout == 30
    env = {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "600"}
    assert launch([script], env).config.shutdown_timeout == 600
    assert launch(["--shutdown-timeout=5", script], env).config.shutdown_timeout == 5
    with pytest.raises(ConfigError, match="--shutdown-timeout"):
        launch(["--shutdown-timeout=-1", script])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rdzv-backend=static", "--rdzv-endpoint=10.0.0.1"], "--rdzv-endpoint=10.0.0.1: give"),
        (["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:abc"], "'abc' is not a number"),
        (["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:99999"], "from 0 to 65535"),
        (["--nnodes=2", "--rdzv-backend=etcd", "--rdzv-endpoint=h:0"], "from 1 to 65535"),
        (["--nnodes=2", "--rdzv-backend=etcd-v2", "--rdzv-endpoint=h,:x"], "=:x: the port 'x'"),
        (
            ["--nnodes=2", "--rdzv-backend=etcd", "--rdzv-endpoint=h", "--rdzv-conf=protocol=ftp"],
            "protocol=ftp",
        ),
        (["--master-addr=h", "--master-port=99999"], "--master-port=99999: the port"),
        (["--master-port=-1"], "--master-port=-1: the port"),
        (["--nproc-per-node=²"], "--nproc-per-node=²"),
        (["--logs-specs=NOSUCH"], "no entry point torchrun.logs_specs[NOSUCH]"),
    ],
)
def test_bad_values_are_refused_before_anything_starts(
    script: str, args: list[str], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        launch([*args, script])
    assert says in str(caught.value)


def test_logs_specs_default_is_the_built_in_layout(script: str) -> None:
    assert launch(["--logs-specs=default", script]).config.rdzv_backend == "c10d"


def test_an_installed_logs_specs_plugin_is_named_and_refused(
    script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[torchrun.logs_specs]\nmine = plugin:MySpecs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"torchrun.logs_specs\[mine\].*\(plugin:MySpecs\)"):
        launch(["--logs-specs=mine", script])


def test_etcd_endpoints_are_checked_with_their_default_port(script: str) -> None:
    config = launch(
        ["--nnodes=2", "--rdzv-backend=etcd", "--rdzv-endpoint=https://a,[::1]:2380", script]
    ).config
    assert config.rdzv_endpoint == "https://a,[::1]:2380"


@pytest.mark.parametrize(("value", "agent_store"), [(None, True), ("0", True), ("1", False)])
def test_torchruns_switch_gives_torch_store_hosting_to_worker_rank_0(
    script: str, value: str | None, agent_store: bool
) -> None:
    env = {} if value is None else {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": value}
    assert launch([script], env).config.agent_store is agent_store
