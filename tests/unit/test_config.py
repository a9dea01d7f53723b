"""LaunchConfig refuses what the agent could not use, with a line naming the flag."""

from __future__ import annotations

import signal

import pytest

from rallypoint.config import DEFAULT_SIGNALS, LaunchConfig, parse_signal_names
from rallypoint.errors import ConfigError
from rallypoint.signals import DEFAULT_SIGNALS_TEXT


def config(**fields: object) -> LaunchConfig:
    return LaunchConfig(min_nodes=1, max_nodes=2, nproc_per_node=1, **fields)  # type: ignore[arg-type]


def test_the_default_signal_list_is_torchruns() -> None:
    assert DEFAULT_SIGNALS == DEFAULT_SIGNALS_TEXT == "SIGTERM,SIGINT,SIGHUP,SIGQUIT"
    assert config().handled_signals == (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
    )


def test_signal_lists_skip_empty_items() -> None:
    assert parse_signal_names(" SIGUSR1, ,SIGTERM,") == (signal.SIGUSR1, signal.SIGTERM)
    assert parse_signal_names("") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("SIGTERM,SIGKILL", "SIGKILL cannot be caught"),
        ("SIGSTOP", "SIGSTOP cannot be caught"),
        ("SIGTERM,NOSUCH", "'NOSUCH' is not a signal name"),
        ("sigterm", "'sigterm' is not a signal name"),
        ("15", "'15' is not a signal name"),
    ],
)
def test_unknown_and_uncatchable_signals_are_refused(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"^--signals-to-handle={text}: ") as caught:
        config(signals_to_handle=text)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"master_port": 65536}, "--master-port=65536: the port must be from 0 to 65535"),
        ({"master_port": -1}, "--master-port=-1"),
        ({"rdzv_endpoint": "h:abc"}, "--rdzv-endpoint=h:abc"),
        ({"rdzv_backend": "static", "rdzv_endpoint": "h:70000"}, "--rdzv-endpoint=h:70000"),
        ({"node_rank": -1}, "--node-rank must be 0 or more"),
        ({"rdzv_backend": "static", "node_rank": 2}, "--node-rank=2 must be below --nnodes (2)"),
        ({"run_id": "a/b"}, "must not contain '/'"),
        ({"run_id": "x" * 201}, "under 200 bytes"),
    ],
)
def test_values_the_agent_could_not_use_are_refused(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**fields)
    assert says in str(caught.value)


def test_etcd_endpoint_lists_are_left_to_the_etcd_settings() -> None:
    assert config(rdzv_backend="etcd", rdzv_endpoint="a:1,b:2").rdzv_endpoint == "a:1,b:2"
    assert config(rdzv_backend="c10d", node_rank=5).node_rank == 5
