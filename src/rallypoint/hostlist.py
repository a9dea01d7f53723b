"""Slurm's hostlist syntax (``gpu[001-004,010],login1``), expanded in pure code.

Design note: under Slurm the step's nodes arrive compressed in
``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST``; users usually expand them with
``scontrol show hostnames``, a process and a controller round trip per launch.
This module reads the same syntax itself, as Slurm's own hostlist code does:

- hosts are separated by commas, spaces or tabs (not inside brackets);
- ``prefix[ranges]`` expands each range ``LO-HI`` or number ``N`` in order,
  keeping the order and any duplicates;
- a number is printed at least as wide as the range's ``LO`` was written, so
  ``[08-10]`` gives ``08 09 10`` and ``[8-10]`` gives ``8 9 10``;
- several brackets multiply out in Slurm's order (see :func:`_slurm_order`):
  ``rack[1-2]-n[1-2]`` gives ``rack1-n1 rack1-n2 rack2-n1 rack2-n2``; text
  after the last bracket is refused, as Slurm refuses it;
- a range of more than 65,536 hosts is refused, as Slurm refuses it.

Pure: no I/O; errors are :class:`~rallypoint.errors.ConfigError` naming ``what``.
"""

from __future__ import annotations

import itertools
import math
import re

from rallypoint.errors import ConfigError

MAX_HOSTS = 64 * 1024  # Slurm's MAX_RANGE: more is taken as a mistake
SEPARATORS = ",\t "
_GROUP = re.compile(r"(\[[^\[\]]*\])")
_RANGE = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


def _tokens(text: str, what: str) -> list[str]:
    """Split at separators outside brackets; brackets must pair and never nest."""
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise ConfigError(f"{what}={text}: brackets must pair, one level deep")
        if depth == 0 and char in SEPARATORS:
            tokens.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ConfigError(f"{what}={text}: a '[' is never closed")
    return [token for token in [*tokens, "".join(current)] if token]


def _numbers(group: str, label: str) -> list[str]:
    """``"001-003,7"`` -> ["001", "002", "003", "7"]."""
    numbers: list[str] = []
    for item in group.split(","):
        found = _RANGE.fullmatch(item)
        if found is None:
            raise ConfigError(f"{label}: {item!r} is not N or LO-HI (digits only)")
        low_text, high_text = found.group(1), found.group(2) or found.group(1)
        low, high = int(low_text), int(high_text)
        if low > high:
            raise ConfigError(f"{label}: the range {item} runs backwards")
        if high - low + 1 > MAX_HOSTS - len(numbers):
            raise ConfigError(f"{label}: more than {MAX_HOSTS} hosts")
        numbers += [str(n).zfill(len(low_text)) for n in range(low, high + 1)]
    return numbers


def _slurm_order(count: int) -> list[int]:
    """The brackets from the slowest-varying to the fastest, as Slurm walks them.

    Slurm expands the last bracket as the host's range and the others as its
    prefix, innermost (rightmost) prefix bracket first: for ``a[..]b[..]c[..]``
    the order is b, a, c.
    """
    return [*range(count - 2, -1, -1), count - 1] if count > 1 else list(range(count))


def _expand(token: str, label: str) -> list[str]:
    pieces = _GROUP.split(token)  # literal, [group], literal, [group], ..., literal
    literals, groups = pieces[0::2], [p[1:-1] for p in pieces[1::2]]
    if any(c in lit for lit in literals for c in "[]"):
        raise ConfigError(f"{label}: a ']' has no '['")
    if groups and literals[-1]:
        raise ConfigError(f"{label}: {token!r} has text after its last ']' (Slurm refuses it)")
    choices = [_numbers(group, label) for group in groups]
    if math.prod(len(c) for c in choices) > MAX_HOSTS:
        raise ConfigError(f"{label}: more than {MAX_HOSTS} hosts")
    order = _slurm_order(len(groups))
    hosts = []
    for picked in itertools.product(*(choices[i] for i in order)):
        numbers = dict(zip(order, picked, strict=True))
        hosts.append("".join(lit + numbers.get(i, "") for i, lit in enumerate(literals)))
    return hosts


def expand_hostlist(text: str, what: str = "SLURM_JOB_NODELIST") -> tuple[str, ...]:
    """Every host of a Slurm hostlist, in order.

    Args:
        text: the hostlist, e.g. ``gpu[001-004,010],login1``.
        what: the variable or flag named in errors.

    Raises:
        ConfigError: unpaired or nested brackets, a range that is not digits
            or runs backwards, or more than :data:`MAX_HOSTS` hosts.
    """
    hosts: list[str] = []
    for token in _tokens(text, what):
        hosts += _expand(token, f"{what}={text}")
        if len(hosts) > MAX_HOSTS:
            raise ConfigError(f"{what}={text}: more than {MAX_HOSTS} hosts")
    return tuple(hosts)
