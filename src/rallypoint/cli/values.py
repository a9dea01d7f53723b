"""Parsers for the flag values that are small languages of their own.

Each one takes the string as typed and either returns a typed value or raises
:class:`~rallypoint.errors.ConfigError` with a message that names the flag, the
value and what would be right. Pure functions: no I/O.
"""

from __future__ import annotations

import re

from rallypoint.config import StdMask, StdSpec
from rallypoint.errors import ConfigError

_MASK_ALL = re.compile(r"^[0-3]$")
_MASK_PER_RANK = re.compile(r"^(\d:[0-3],)*\d:[0-3]$")


def parse_nnodes(text: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"1:4"`` -> (1, 4)."""
    parts = text.split(":")
    if len(parts) > 2:
        raise ConfigError(f"--nnodes={text}: expected N or MIN:MAX")
    try:
        low, high = int(parts[0]), int(parts[-1])
    except ValueError:
        raise ConfigError(f"--nnodes={text}: expected N or MIN:MAX with integers") from None
    if low < 1:
        raise ConfigError(f"--nnodes={text}: the minimum must be at least 1")
    if low > high:
        raise ConfigError(f"--nnodes={text}: MIN must not exceed MAX")
    return low, high


def parse_rdzv_conf(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> {"a": "1", "b": "2"}: split on commas, then on the first ``=``."""
    conf: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not key or not sep or not value:
            raise ConfigError(
                f"--rdzv-conf={text}: {item!r} is not key=value (both must be non-empty)"
            )
        conf[key] = value
    return conf


def parse_std_spec(flag: str, text: str) -> StdSpec:
    """A ``-r``/``-t`` mask: ``"3"`` or ``"0:1,1:2"`` (single-digit local ranks, as torchrun)."""
    text = text.strip()
    if _MASK_ALL.match(text):
        return StdSpec(default=StdMask(int(text)))
    if not _MASK_PER_RANK.match(text):
        raise ConfigError(
            f"{flag}={text}: expected 0-3 (0 none, 1 stdout, 2 stderr, 3 both) "
            "or LOCAL_RANK:MASK pairs such as 0:1,1:2"
        )
    pairs = [item.split(":") for item in text.split(",")]
    ranks = [int(rank) for rank, _ in pairs]
    if len(set(ranks)) != len(ranks):
        raise ConfigError(f"{flag}={text}: a local rank is listed twice")
    return StdSpec(per_rank=tuple((int(r), StdMask(int(m))) for r, m in pairs))


def parse_ranks_filter(text: str) -> frozenset[int] | None:
    """``"0,2"`` -> {0, 2}; ``""`` -> None (no filter)."""
    if not text.strip():
        return None
    try:
        return frozenset(int(item) for item in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--local-ranks-filter={text}: expected comma-separated local ranks, e.g. 0,1"
        ) from None


def parse_filters(text: str | None) -> tuple[str, ...]:
    """``"a,b,,c"`` -> ("a", "b,c"): commas split, a doubled comma is a literal one.

    As in torchrun, empty items are kept (``"x,"`` -> ("x", "")), and an empty
    item matches every line; None (flag not given) means no filter.
    """
    if text is None:
        return ()
    placeholder = "\x00"
    pieces = text.replace(",,", placeholder).split(",")
    return tuple(p.replace(placeholder, ",") for p in pieces)
