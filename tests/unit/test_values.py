"""The small languages of flag values."""

from __future__ import annotations

import pytest

from rallypoint.cli.values import (
    parse_filters,
    parse_nnodes,
    parse_ranks_filter,
    parse_rdzv_conf,
    parse_std_spec,
)
from rallypoint.config import StdMask, StdSpec
from rallypoint.errors import ConfigError


@pytest.mark.parametrize(("text", "expected"), [("1", (1, 1)), ("2:20", (2, 20)), ("3:3", (3, 3))])
def test_nnodes(text: str, expected: tuple[int, int]) -> None:
    assert parse_nnodes(text) == expected


@pytest.mark.parametrize("text", ["0", "3:2", "1:2:3", "a", "", "0:2"])
def test_nnodes_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--nnodes"):
        parse_nnodes(text)


def test_rdzv_conf_splits_on_first_equals_and_strips() -> None:
    assert parse_rdzv_conf(" a = 1 ,b=x=y,") == {"a": "1", "b": "x=y"}
    assert parse_rdzv_conf("") == {}


@pytest.mark.parametrize("text", ["a", "k=", "=v", "a=1,b"])
def test_rdzv_conf_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--rdzv-conf"):
        parse_rdzv_conf(text)


def test_std_spec_all_and_per_rank() -> None:
    assert parse_std_spec("-r", "3") == StdSpec(default=StdMask.ALL)
    spec = parse_std_spec("-t", "0:1,1:2")
    assert (spec.for_rank(0), spec.for_rank(1), spec.for_rank(2)) == (
        StdMask.OUT,
        StdMask.ERR,
        StdMask.NONE,
    )


@pytest.mark.parametrize("text", ["0:1,", "11", "0:1,1", "1,0:1", "4", "0:1,0:2"])
def test_std_spec_rejects_what_torchrun_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--redirects"):
        parse_std_spec("--redirects", text)


def test_ranks_filter() -> None:
    assert parse_ranks_filter("") is None
    assert parse_ranks_filter("0,2") == frozenset({0, 2})
    with pytest.raises(ConfigError, match="--local-ranks-filter"):
        parse_ranks_filter("0,x")


def test_filters_double_comma_is_a_literal_comma() -> None:
    assert parse_filters("apple,,pie,orange") == ("apple,pie", "orange")
    assert parse_filters("x,") == ("x", "")
    assert parse_filters("") == ("",)
    assert parse_filters(None) == ()
