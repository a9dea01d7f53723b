"""Every worker's argv and environment: rallypoint against the real torchrun.

Each case launches ``scripts/dump_env.py`` (or its ``--no-python`` shell twin,
or a ``-m`` module copy) under both launchers with the same flags, from the
same minimal environment, and compares every variable of every rank. Only the
variables in :data:`ALLOWED_TO_DIFFER` may differ, and each of those is then
checked on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.compat._helpers import SCRIPTS, base_env, load_dumps, run_both
from tests.conftest import WORKERS

pytestmark = [pytest.mark.integration, pytest.mark.torch]

# Variables torch's own import injects into the torchrun launcher's process
# environment (and so into every worker). Found by importing torchrun's modules
# from the same minimal environment (see test_torch_import_injects_nothing):
# on Linux with the CPU wheel, none. (torch/__init__.py only touches PATH on
# Windows and DISABLE_CUPTI_LAZY_REINIT/TEARDOWN_CUPTI under torch.compile.)
TORCH_INJECTED: frozenset[str] = frozenset()

# Per-run values and documented deliberate differences; checked one by one below.
DOCUMENTED_DIFFERENCES = frozenset(
    {
        "TORCHELASTIC_RUN_ID",  # a fresh uuid4 per run (standalone / auto-c10d)
        "MASTER_PORT",  # a free port picked per run
        "TORCHELASTIC_ERROR_FILE",  # under a fresh mkdtemp folder; shape compared
        "TORCHELASTIC_TIMER_FILE",  # with file timers on: a fresh path per run; shape compared
    }
)
ALLOWED_TO_DIFFER = DOCUMENTED_DIFFERENCES | TORCH_INJECTED

ERROR_FILE_TAIL = re.compile(r"/attempt_(\d+)/(\d+)/error\.json$")
DEFAULT_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT"
UUID = "uuid4"  # Case.run_id: a fresh uuid4 per launcher


@dataclass(frozen=True)
class Case:
    id: str
    flags: tuple[str, ...]
    world: int
    target: str = "script"  # script | run_path | module | binary
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    run_id: str = UUID
    static_port: bool = False  # add --master-port=<free port>; run the launchers one by one
    expect: Callable[[int], dict[str, str | None]] = lambda rank: {}  # None: must be unset
    expect_args: Callable[[int], list[str]] | None = None  # argv[1:] of each rank
    # Fail attempt 0, dump attempt 1 (rallypoint's is warm: a standby's). Not with --run-path:
    # torchrun's restarted run-path child gains TORCHINDUCTOR_CACHE_DIR, warm or not.
    restart: bool = False


CASES = [
    Case(
        "plain_nproc1",  # no --standalone: single node auto-switches to c10d
        ("--nproc-per-node", "1"),
        world=1,
        expect=lambda r: {
            "OMP_NUM_THREADS": None,  # nproc == 1: not set
            "ROLE_NAME": "default",
            "TORCHELASTIC_MAX_RESTARTS": "0",
            "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
            "TORCHELASTIC_SIGNALS_TO_HANDLE": DEFAULT_SIGNALS,
            "CUDA_VISIBLE_DEVICES": None,
        },
    ),
    Case(
        "standalone_nproc3_template_args",
        ("--standalone", "--nproc-per-node", "3"),
        world=3,
        args=("$local_rank", "${local_rank}", "a$$b", "--x=$local_rank", "$HOME", "${OTHER}", "p"),
        expect=lambda r: {"OMP_NUM_THREADS": "1"},
        expect_args=lambda r: [str(r), str(r), "a$b", f"--x={r}", "$HOME", "${OTHER}", "p"],
    ),
    Case(
        "role_and_max_restarts",
        ("--nproc-per-node=2", "--role", "trainer", "--max-restarts=2"),
        world=2,
        expect=lambda r: {
            "ROLE_NAME": "trainer",
            "TORCHELASTIC_MAX_RESTARTS": "2",
            "TORCHELASTIC_RESTART_COUNT": "0",
        },
    ),
    Case(
        "underscore_spellings",
        (
            "--nproc_per_node",
            "2",
            "--max_restarts",
            "1",
            "--rdzv_id",
            "discarded",  # auto-c10d replaces the id
            "--signals_to_handle",
            "SIGTERM,SIGUSR1",
            "--monitor_interval",
            "0.2",
        ),
        world=2,
        expect=lambda r: {
            "TORCHELASTIC_MAX_RESTARTS": "1",
            "TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGTERM,SIGUSR1",
        },
    ),
    Case(
        "pet_env_instead_of_flags",
        (),
        world=3,
        env={
            "PET_NPROC_PER_NODE": "3",
            "PET_MAX_RESTARTS": "1",
            "PET_ROLE": "petrole",
            "PET_STANDALONE": "1",
        },
        expect=lambda r: {
            "ROLE_NAME": "petrole",
            "TORCHELASTIC_MAX_RESTARTS": "1",
            "PET_ROLE": "petrole",  # the launcher's env leaks into workers
        },
    ),
    Case(
        "module",
        ("-m", "--nproc-per-node=2"),
        world=2,
        target="module",
        args=("m", "$local_rank"),
        expect_args=lambda r: ["m", str(r)],
    ),
    Case(
        "no_python_shell_script",
        ("--no-python", "--nproc-per-node=2"),
        world=2,
        target="binary",
        args=("x", "$local_rank", "a$$b"),
        expect_args=lambda r: ["x", str(r), "a$b"],
    ),
    Case(
        "run_path_absolute",
        ("--run-path", "--nproc-per-node=2"),
        world=2,
        target="run_path",
        args=("rp", "${local_rank}"),
        expect_args=lambda r: ["rp", str(r)],
    ),
    Case(
        "standalone_replaces_rdzv_id_and_keeps_presets",
        ("--standalone", "--rdzv-id=x", "--nproc-per-node=2"),
        world=2,
        env={"OMP_NUM_THREADS": "7", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0"},
        expect=lambda r: {"OMP_NUM_THREADS": "7", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0"},
    ),
    Case(
        "static_master_port",
        ("--nnodes=1", "--nproc-per-node=2", "--master-addr=127.1", "--rdzv-id=static-job"),
        world=2,
        run_id="static-job",
        static_port=True,
        expect=lambda r: {"MASTER_ADDR": "127.1"},  # verbatim, not resolved
    ),
    Case(
        "file_timers_enabled",
        ("--nproc-per-node=2",),
        world=2,
        env={"TORCHELASTIC_ENABLE_FILE_TIMER": "1"},
        expect=lambda r: {"TORCHELASTIC_ENABLE_FILE_TIMER": "1"},
    ),
    Case(
        "warm_restart_script",
        ("--nproc-per-node=2", "--max-restarts=1"),
        world=2,
        args=("$local_rank", "x"),
        restart=True,
        expect_args=lambda r: [str(r), "x"],
    ),
    Case(
        "warm_restart_module",
        ("-m", "--nproc-per-node=2", "--max-restarts=1"),
        world=2,
        target="module",
        restart=True,
    ),
    Case(
        "virtual_local_rank",
        ("--virtual-local-rank", "--nproc-per-node=2"),
        world=2,
        env={"CUDA_VISIBLE_DEVICES": "3,5"},
        expect=lambda r: {"LOCAL_RANK": "0", "CUDA_VISIBLE_DEVICES": ("3", "5")[r]},
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _target(case: Case, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The training_script argument and any environment it needs."""
    dump = SCRIPTS / ("dump_env_restart.py" if case.restart else "dump_env.py")
    if case.target in ("script", "run_path"):
        return str(dump), {}
    if case.target == "module":
        package = tmp_path / "modroot" / "compatpkg"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        shutil.copy(dump, package / "dump.py")  # the same name for both scripts
        shutil.copy(WORKERS / "standbys_ready.py", package)  # what dump_env_restart uses
        # the work tree's sources stay on the path (scratch_env keeps PYTHONPATH)
        path = os.pathsep.join(
            filter(None, [str(tmp_path / "modroot"), os.environ.get("PYTHONPATH")])
        )
        return "compatpkg.dump", {"PYTHONPATH": path}
    shell = tmp_path / "dump_env.sh"
    shutil.copy(SCRIPTS / "dump_env.sh", shell)
    shell.chmod(0o755)
    return str(shell), {}


def _common_expectations(case: Case, rank: int) -> dict[str, str | None]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(case.world),
        "LOCAL_WORLD_SIZE": str(case.world),
        "GROUP_RANK": "0",
        "GROUP_WORLD_SIZE": "1",
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(case.world),
        "TORCHELASTIC_RESTART_COUNT": "1" if case.restart else "0",
        "NODE_RANK": None,
        "LOCAL_SIZE": None,
        "PYTHONUNBUFFERED": None,
    }


def _is_uuid4(text: str) -> bool:
    try:
        return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text
    except ValueError:
        return False


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_worker_env_and_argv_match_torchrun(case: Case, tmp_path: Path, mark: str) -> None:
    script, target_env = _target(case, tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    dump_dirs = {name: tmp_path / f"dump_{name}" for name in ("torchrun", "rallypoint")}
    envs = {}
    for name, folder in dump_dirs.items():
        folder.mkdir()
        envs[name] = base_env(tmpdir, mark, COMPAT_DUMP_DIR=str(folder), **target_env, **case.env)
    flags = list(case.flags)
    port = None
    if case.static_port:
        port = _free_port()
        flags.append(f"--master-port={port}")
    outcomes = run_both(
        [*flags, script, *case.args], envs, cwd=tmp_path, concurrent=not case.static_port
    )
    for outcome in outcomes.values():
        assert outcome.returncode == 0, outcome.describe()

    dumps = {name: load_dumps(folder) for name, folder in dump_dirs.items()}
    assert sorted(dumps["torchrun"]) == list(range(case.world))
    assert sorted(dumps["rallypoint"]) == list(range(case.world))
    if case.restart:  # rallypoint's attempt 1 was warm, torchrun's cold
        assert [d["torch_preloaded"] for d in dumps["rallypoint"].values()] == [True] * case.world
        assert not any(d["torch_preloaded"] for d in dumps["torchrun"].values())

    # 1. Everything outside the allow-list is identical, rank by rank.
    strict = {"MASTER_PORT", "TORCHELASTIC_RUN_ID"} if case.static_port else set()
    allowed = ALLOWED_TO_DIFFER - strict
    differences = []
    envs_by_launcher: dict[str, dict[int, dict[str, str]]] = {"torchrun": {}, "rallypoint": {}}
    for name, by_rank in dumps.items():
        for rank, dump in by_rank.items():
            env = dict(dump["env"])
            assert env.pop("COMPAT_DUMP_DIR") == str(dump_dirs[name])  # the harness's own
            envs_by_launcher[name][rank] = env
    for rank in range(case.world):
        t_argv, r_argv = dumps["torchrun"][rank]["argv"], dumps["rallypoint"][rank]["argv"]
        if t_argv != r_argv:
            differences.append(f"rank {rank} argv: torchrun={t_argv!r} rallypoint={r_argv!r}")
        t_env, r_env = envs_by_launcher["torchrun"][rank], envs_by_launcher["rallypoint"][rank]
        differences.extend(
            f"rank {rank} {key}: torchrun={t_env.get(key)!r} rallypoint={r_env.get(key)!r}"
            for key in sorted((t_env.keys() | r_env.keys()) - allowed)
            if t_env.get(key) != r_env.get(key)
        )
    assert not differences, "\n".join(differences)

    # 2. What torchrun does is what this case expects (so the comparison means something).
    for rank in range(case.world):
        env = envs_by_launcher["torchrun"][rank]
        expected = {**_common_expectations(case, rank), **case.expect(rank)}
        assert {k: env.get(k) for k in expected} == expected, f"rank {rank}"
        if case.expect_args is not None:
            assert dumps["torchrun"][rank]["argv"][1:] == case.expect_args(rank)

    # 3. The allowed differences, one by one.
    for name, by_rank in envs_by_launcher.items():
        run_ids = {env["TORCHELASTIC_RUN_ID"] for env in by_rank.values()}
        ports = {env["MASTER_PORT"] for env in by_rank.values()}
        assert len(run_ids) == 1, f"{name}: ranks disagree on the run id: {run_ids}"
        assert len(ports) == 1, f"{name}: ranks disagree on MASTER_PORT: {ports}"
        (run_id,), (master_port,) = run_ids, ports
        if case.run_id == UUID:
            assert _is_uuid4(run_id), f"{name}: run id {run_id!r} is not a fresh uuid4"
        else:
            assert run_id == case.run_id, name
        assert 0 < int(master_port) < 65536, name
        if port is not None:
            assert master_port == str(port), name
        for rank, env in by_rank.items():
            assert env["TORCHELASTIC_USE_AGENT_STORE"] == "True", (name, rank)
            error_file = env["TORCHELASTIC_ERROR_FILE"]
            assert error_file.startswith(f"{tmpdir}/"), f"{name}: {error_file} not under TMPDIR"
            tail = ERROR_FILE_TAIL.search(error_file)
            assert tail, f"{name}: bad TORCHELASTIC_ERROR_FILE shape {error_file!r}"
            assert tail.groups() == (env["TORCHELASTIC_RESTART_COUNT"], str(rank)), name
    _check_timer_files(case, envs_by_launcher, tmpdir)
    t_ids = {e["TORCHELASTIC_RUN_ID"] for e in envs_by_launcher["torchrun"].values()}
    r_ids = {e["TORCHELASTIC_RUN_ID"] for e in envs_by_launcher["rallypoint"].values()}
    if case.run_id == UUID:
        assert t_ids != r_ids  # each launcher made its own


def _check_timer_files(
    case: Case, envs: dict[str, dict[int, dict[str, str]]], tmpdir: Path
) -> None:
    """With file timers on, every rank gets the same fresh pipe path in TMPDIR; else none."""
    for name, by_rank in envs.items():
        paths = {env.get("TORCHELASTIC_TIMER_FILE") for env in by_rank.values()}
        assert len(paths) == 1, (name, paths)
        (path,) = paths
        if case.env.get("TORCHELASTIC_ENABLE_FILE_TIMER") != "1":
            assert path is None, name
            continue
        assert path is not None, name
        folder, _, leaf = path.rpartition("/")
        assert folder == str(tmpdir), (name, path)
        assert leaf.startswith("watchdog_timer_"), (name, path)
        assert _is_uuid4(leaf.removeprefix("watchdog_timer_")), (name, path)


def test_torch_import_injects_nothing(tmp_path: Path) -> None:
    """TORCH_INJECTED is exactly what importing torchrun's modules adds to os.environ."""
    code = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "import torch, torch.distributed.run\n"
        "import torch.distributed.elastic.agent.server.local_elastic_agent\n"
        "import torch.distributed.elastic.multiprocessing\n"
        "print(json.dumps(sorted(k for k, v in os.environ.items() if before.get(k) != v)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=base_env(tmp_path, "unused"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert set(json.loads(done.stdout)) == TORCH_INJECTED
    expected_allow_list = {
        "TORCHELASTIC_RUN_ID",
        "MASTER_PORT",
        "TORCHELASTIC_ERROR_FILE",
        "TORCHELASTIC_TIMER_FILE",
    }
    assert expected_allow_list == ALLOWED_TO_DIFFER
