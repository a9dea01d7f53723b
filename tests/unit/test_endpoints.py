"""The one endpoint parser: the forms torchrun reads, and one clear error for the rest."""

from __future__ import annotations

import pytest

from rallypoint.endpoints import Endpoint, check_port, parse_endpoint
from rallypoint.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host:1234", Endpoint("host", 1234)),
        ("host", Endpoint("host", 29400)),
        (" host:7 ", Endpoint("host", 7)),
        (":5", Endpoint("localhost", 5)),
        ("", Endpoint("localhost", 29400)),
        ("10.0.0.1:0", Endpoint("10.0.0.1", 0)),
        ("node-1.cluster_a.example:65535", Endpoint("node-1.cluster_a.example", 65535)),
        ("[::1]:7", Endpoint("::1", 7)),
        ("[fe80::1%eth0]", Endpoint("fe80::1%eth0", 29400)),
        ("::1", Endpoint("::1", 29400)),
        ("2001:db8::2", Endpoint("2001:db8::2", 29400)),
        ("gpü01:1", Endpoint("gpü01", 1)),
    ],
)
def test_accepted_forms(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text, 29400) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("host:abc", "'abc' is not a number"),
        ("host:", "'' is not a number"),
        ("host:-1", "'-1' is not a number"),
        ("host:99999", "from 0 to 65535"),
        ("host:1" + "0" * 5000, "from 0 to 65535"),
        ("host:١٢", "is not a number"),  # digits int() reads, but not a port anyone typed
        ("[::1", "[address]:port"),
        ("[::1]x", "[address]:port"),
        ("a b:1", "is not a host name"),
        ("h/x:1", "is not a host name"),
        ("zz::yy", "is not a host name"),
    ],
    ids=lambda value: value[:20],
)
def test_refused_forms_name_the_flag_and_the_value(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"^--rdzv-endpoint=") as caught:
        parse_endpoint(text, 29400)
    assert says in str(caught.value)
    assert text in str(caught.value)


def test_a_required_port_and_the_lowest_port() -> None:
    with pytest.raises(ConfigError, match="give a port"):
        parse_endpoint("host", None)
    with pytest.raises(ConfigError, match="from 1 to 65535"):
        parse_endpoint("host:0", 2379, lowest=1)
    assert parse_endpoint("host", 2379, lowest=1) == Endpoint("host", 2379)


def test_check_port_names_what() -> None:
    assert check_port(0, "--master-port=0") == 0
    for port in (-1, 65536, 10**30):
        with pytest.raises(ConfigError, match=f"^--master-port={port}: "):
            check_port(port, f"--master-port={port}")
