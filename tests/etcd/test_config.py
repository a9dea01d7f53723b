"""Parsing --rdzv-endpoint and --rdzv-conf for etcd (no server needed)."""

from __future__ import annotations

import pytest

from rallypoint.errors import ConfigError
from rallypoint.store.etcd import EtcdTls, parse_endpoints, settings_of


def test_endpoints() -> None:
    assert parse_endpoints("h1:2379, h2:2380,h3") == (
        (("h1", 2379), ("h2", 2380), ("h3", 2379)),
        None,
    )
    assert parse_endpoints("https://a:1,https://b:2/") == ((("a", 1), ("b", 2)), "https")
    assert parse_endpoints("[::1]:2379,::1") == ((("::1", 2379), ("::1", 2379)), None)


@pytest.mark.parametrize("text", ["", " , ", "h:0", "h:x", "ftp://h:1", "http://a,https://b"])
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_endpoints(text)


def test_torchrun_v2_tls_names_are_aliases() -> None:
    s = settings_of(
        "a:1,b:2",
        {"protocol": "https", "ca_cert": "/ca", "ssl_cert": "/c", "ssl_cert_key": "/k"},
    )
    assert s.https
    assert s.tls == EtcdTls("/ca", "/c", "/k")
    assert s.endpoints == (("a", 1), ("b", 2))
    assert settings_of("a", {"cacert": "/ca"}).https  # a CA implies https


def test_auth_and_plain() -> None:
    s = settings_of("a", {"user": "root", "password": "pw", "session_ttl": "2"})
    assert (s.https, s.tls, s.auth, s.session_ttl) == (False, None, ("root", "pw"), 2.0)


@pytest.mark.parametrize(
    "conf",
    [
        {"protocol": "gopher"},
        {"protocol": "http", "cacert": "/ca"},
        {"user": "root"},
        {"key": "/k"},
        {"session_ttl": "0.5"},
        {"cacert": "/a", "ca_cert": "/b"},
    ],
)
def test_bad_conf(conf: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        settings_of("a", conf)


def test_protocol_must_match_the_scheme() -> None:
    with pytest.raises(ConfigError):
        settings_of("http://a:1", {"protocol": "https"})
