"""Hosts and ports: the one parser of every endpoint and port the launcher reads.

Design note: ``--rdzv-endpoint`` (c10d, static and each etcd item), ``--master-port``
and the rendezvous factory used to parse ``host:port`` three ways, and a bad port
surfaced as a ``ValueError`` or ``OverflowError`` deep in the agent. Everything
now goes through :func:`parse_endpoint` and :func:`check_port`, which raise
:class:`~rallypoint.errors.ConfigError` naming the flag and what would be right.

Accepted forms, as torchrun's ``parse_rendezvous_endpoint`` reads them:

- ``host:port`` and ``host`` (then the caller's default port);
- ``[v6addr]:port`` and ``[v6addr]``; a bare IPv6 address (two colons or more,
  no brackets) is a host with the default port;
- an empty host (``""`` or ``":port"``) is ``localhost``.

A host is a name, an IPv4 address or an IPv6 address: letters, digits, ``.``,
``-``, ``_``, and ``:``/``%`` inside an IPv6 address. Pure: no I/O, no name lookups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rallypoint.errors import ConfigError

MAX_PORT = 65535
C10D_PORT = 29400
MASTER_PORT = 29500
ETCD_PORT = 2379

_NAME = re.compile(r"[\w.-]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[\w.-]+)?")
_FORMS = "host[:port] or [ipv6]:port"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A host and a port, already checked."""

    host: str
    port: int


def check_port(port: int, what: str, lowest: int = 0) -> int:
    """``port`` if it lies in ``lowest``..65535.

    Raises:
        ConfigError: naming ``what`` (e.g. ``--master-port=99999``) and the range.
    """
    if not lowest <= port <= MAX_PORT:
        raise ConfigError(f"{what}: the port must be from {lowest} to {MAX_PORT}")
    return port


def _port(text: str, what: str, lowest: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(
            f"{what}: the port {text!r} is not a number; expected {_FORMS}, "
            f"with a port from {lowest} to {MAX_PORT}"
        )
    digits = text.lstrip("0") or "0"
    return check_port(int(digits) if len(digits) <= len(str(MAX_PORT)) else -1, what, lowest)


def _split(text: str, label: str) -> tuple[str, str | None]:
    """``text`` -> (host, port text or None), by the forms of the module docstring."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ConfigError(f"{label}: an IPv6 address is written [address]:port")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def _check_host(host: str, what: str) -> str:
    pattern = _IPV6 if ":" in host else _NAME
    if not pattern.fullmatch(host):
        raise ConfigError(
            f"{what}: {host!r} is not a host name, an IPv4 address or an IPv6 address "
            f"(expected {_FORMS})"
        )
    return host


def parse_endpoint(
    text: str, default_port: int | None, what: str = "--rdzv-endpoint", lowest: int = 0
) -> Endpoint:
    """``host[:port]``, ``[v6]:port`` or a bare host -> an :class:`Endpoint`.

    Args:
        text: the endpoint as typed (surrounding spaces are ignored).
        default_port: the port when ``text`` has none; None means a port is required.
        what: the flag named in errors.
        lowest: the smallest port accepted (1 where port 0 cannot be meant).

    Raises:
        ConfigError: a bad host, a port that is not a number or out of range, or
            a missing port where one is required.
    """
    label = f"{what}={text}"
    host, port_text = _split(text.strip(), label)
    host = _check_host(host, label) if host else "localhost"
    if port_text is not None:
        return Endpoint(host, _port(port_text, label, lowest))
    if default_port is None:
        raise ConfigError(f"{label}: give a port ({_FORMS})")
    return Endpoint(host, default_port)
