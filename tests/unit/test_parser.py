"""The parser: both spellings, PET_ fallbacks with torchrun's rules, no side effects."""

from __future__ import annotations

import pytest

from rallypoint.cli.flags import FLAGS, FlagKind
from rallypoint.cli.parser import help_text, parse_args
from rallypoint.errors import UsageError


def test_defaults_are_torchruns() -> None:
    raw = parse_args(["train.py"], {})
    assert (raw.nnodes, raw.nproc_per_node, raw.rdzv_backend, raw.rdzv_id) == (
        "1:1",
        "1",
        "static",
        "none",
    )
    assert (raw.max_restarts, raw.monitor_interval, raw.role, raw.master_port) == (
        0,
        0.1,
        "default",
        None,
    )
    assert raw.signals_to_handle == "SIGTERM,SIGINT,SIGHUP,SIGQUIT"
    assert raw.standalone is False
    assert raw.shutdown_timeout is None


def test_both_spellings_and_prefixes() -> None:
    assert parse_args(["--nproc_per_node=4", "x.py"], {}).nproc_per_node == "4"
    assert parse_args(["--nproc-per-node", "4", "x.py"], {}).nproc_per_node == "4"
    assert parse_args(["--max_rest=2", "x.py"], {}).max_restarts == 2


def test_script_args_are_untouched_even_if_they_look_like_flags() -> None:
    raw = parse_args(["x.py", "--nproc-per-node=9", "-m", "$local_rank"], {})
    assert raw.training_script == "x.py"
    assert raw.training_script_args == ("--nproc-per-node=9", "-m", "$local_rank")
    assert raw.nproc_per_node == "1"


def test_pet_replaces_default_and_cli_wins() -> None:
    env = {"PET_NPROC_PER_NODE": "3", "PET_MAX_RESTARTS": "2", "PET_STANDALONE": "1"}
    raw = parse_args(["x.py"], env)
    assert (raw.nproc_per_node, raw.max_restarts, raw.standalone) == ("3", 2, True)
    assert parse_args(["--nproc-per-node=5", "x.py"], env).nproc_per_node == "5"


def test_pet_switch_zero_is_off() -> None:
    assert parse_args(["x.py"], {"PET_STANDALONE": "0"}).standalone is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PET_MAX_RESTARTS": "x"}, "PET_MAX_RESTARTS"),
        ({"PET_STANDALONE": "true"}, "PET_STANDALONE"),
        ({"PET_MASTER_PORT": ""}, "PET_MASTER_PORT"),
    ],
)
def test_bad_pet_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        parse_args(["x.py"], env)


def test_no_pet_for_logs_specs_and_numa() -> None:
    raw = parse_args(["x.py"], {"PET_LOGS_SPECS": "a", "PET_NUMA_BINDING": "node"})
    assert raw.logs_specs is None
    assert raw.numa_binding is None


def test_ambiguous_prefix_is_refused() -> None:
    with pytest.raises(UsageError, match="ambiguous"):
        parse_args(["--nproc=2", "x.py"], {})


def test_every_flag_has_pet_name_from_its_first_long_option() -> None:
    names = {f.dest: f.env_name for f in FLAGS}
    assert names["nproc_per_node"] == "PET_NPROC_PER_NODE"
    assert names["redirects"] == "PET_REDIRECTS"
    assert names["module"] == "PET_MODULE"
    assert names["logs_specs"] is None


def test_help_lists_every_spelling() -> None:
    text = help_text({})
    for flag in FLAGS:
        for name in flag.names:
            assert name in text
    switches = [f for f in FLAGS if f.kind is FlagKind.SWITCH]
    assert {f.dest for f in switches} == {
        "standalone",
        "module",
        "no_python",
        "run_path",
        "virtual_local_rank",
        "dry_run",
    }


def test_pet_value_outside_the_choices_is_refused() -> None:
    with pytest.raises(UsageError, match=r"PET_START_METHOD='thread'.*spawn, fork, forkserver"):
        parse_args(["x.py"], {"PET_START_METHOD": "thread"})
    assert parse_args(["x.py"], {"PET_START_METHOD": "fork"}).start_method == "fork"


def test_a_lone_double_dash_value_is_refused() -> None:
    """argparse of Python 3.11 gives ``--nnodes=--`` as ``[]``; torchrun then fails deep inside."""
    with pytest.raises(UsageError, match="argument --nnodes: expected one argument"):
        parse_args(["--nnodes=--", "x.py"], {})
