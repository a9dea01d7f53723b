"""``--rdzv-endpoint`` and ``--rdzv-conf`` for the etcd backend, parsed into settings.

Endpoints: ``host1:2379,host2:2379`` (the port defaults to 2379; ``http://`` or
``https://`` may prefix each one; IPv6 hosts go in brackets). ``--rdzv-conf`` keys:

=================================  ==========================================================
key (torchrun etcd-v2 alias)       meaning
=================================  ==========================================================
``protocol``                       ``http`` (default) or ``https``
``cacert`` (``ca_cert``)           CA bundle that signed etcd's certificates (implies https)
``cert`` (``ssl_cert``)            client certificate, for ``--client-cert-auth`` (implies https)
``key`` (``ssl_cert_key``)         the client certificate's private key
``user`` (``username``)            etcd user, when etcd has auth enabled
``password``                       that user's password
``session_ttl``                    seconds before a dead node's keys vanish (default 5)
=================================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rallypoint.endpoints import ETCD_PORT, parse_endpoint
from rallypoint.errors import ConfigError

from .store import DEFAULT_SESSION_TTL, EtcdStore, EtcdTls

__all__ = [
    "DEFAULT_PORT",
    "EtcdSettings",
    "connect_from_config",
    "parse_endpoints",
    "settings_of",
]

DEFAULT_PORT = ETCD_PORT

_ALIASES = {
    "ca_cert": "cacert",
    "ssl_cert": "cert",
    "ssl_cert_key": "key",
    "username": "user",
}


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    """Everything needed to connect an ``EtcdStore``."""

    endpoints: tuple[tuple[str, int], ...]
    https: bool
    tls: EtcdTls | None
    auth: tuple[str, str] | None
    session_ttl: float = DEFAULT_SESSION_TTL


def parse_endpoints(text: str) -> tuple[tuple[tuple[str, int], ...], str | None]:
    """Split ``--rdzv-endpoint`` into ``(host, port)`` pairs and the scheme they gave.

    Returns:
        The endpoints, and ``"http"``/``"https"`` if the endpoints named one (else None).

    Raises:
        ConfigError: empty, a bad port, or schemes that disagree.
    """
    endpoints: list[tuple[str, int]] = []
    schemes: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if sep:
            if scheme.lower() not in ("http", "https"):
                raise ConfigError(f"--rdzv-endpoint={item}: the scheme must be http or https")
            schemes.add(scheme.lower())
            item = rest.rstrip("/")
        endpoints.append(_host_port(item))
    if not endpoints:
        raise ConfigError("--rdzv-endpoint: give at least one etcd endpoint (host:port)")
    if len(schemes) > 1:
        raise ConfigError("--rdzv-endpoint: mixes http:// and https:// endpoints")
    return tuple(endpoints), (schemes.pop() if schemes else None)


def _host_port(item: str) -> tuple[str, int]:
    endpoint = parse_endpoint(item, DEFAULT_PORT, lowest=1)
    return endpoint.host, endpoint.port


def settings_of(endpoint_text: str, conf: Mapping[str, str]) -> EtcdSettings:
    """The etcd settings named by ``--rdzv-endpoint`` and ``--rdzv-conf``.

    Raises:
        ConfigError: a value is malformed or the keys contradict each other.
    """
    endpoints, scheme = parse_endpoints(endpoint_text)
    values: dict[str, str] = {}
    for key, value in conf.items():
        name = _ALIASES.get(key, key)
        if name in values and values[name] != value:
            raise ConfigError(f"--rdzv-conf gives {name} twice with different values")
        values[name] = value
    protocol = values.get("protocol", "").lower() or None
    if protocol not in (None, "http", "https"):
        raise ConfigError(f"--rdzv-conf protocol={protocol}: expected http or https")
    if protocol is not None and scheme is not None and protocol != scheme:
        raise ConfigError(f"--rdzv-conf protocol={protocol} contradicts {scheme}:// endpoints")
    files = {k: values.get(k) or None for k in ("cacert", "cert", "key")}
    if files["key"] is not None and files["cert"] is None:
        raise ConfigError("--rdzv-conf key (ssl_cert_key) needs cert (ssl_cert)")
    wanted = protocol or scheme
    if wanted == "http" and any(files.values()):
        raise ConfigError("--rdzv-conf: TLS files were given but the protocol is http")
    https = wanted == "https" or any(files.values())
    tls = EtcdTls(files["cacert"], files["cert"], files["key"]) if https else None
    user, password = values.get("user"), values.get("password")
    if (user is None) != (password is None):
        raise ConfigError("--rdzv-conf: give both user and password, or neither")
    auth = (user, password) if user is not None and password is not None else None
    session_ttl = DEFAULT_SESSION_TTL
    if "session_ttl" in values:
        try:
            session_ttl = float(values["session_ttl"])
        except ValueError:
            session_ttl = math.nan
        if not (math.isfinite(session_ttl) and session_ttl >= 1):
            raise ConfigError(
                f"--rdzv-conf session_ttl={values['session_ttl']}: expected seconds >= 1"
            )
    return EtcdSettings(endpoints, https, tls, auth, session_ttl)


async def connect_from_config(
    endpoint_text: str, run_id: str, conf: Mapping[str, str], timeout: float = 30.0
) -> EtcdStore:
    """Connect an ``EtcdStore`` as ``--rdzv-endpoint`` and ``--rdzv-conf`` say.

    Raises:
        ConfigError: the settings are malformed.
        StoreConnectionError: no endpoint answered (each one's failure is named).
        StoreAuthError: etcd refused the user or password.
    """
    settings = settings_of(endpoint_text, conf)
    return await EtcdStore.connect(
        settings.endpoints,
        run_id,
        tls=settings.tls,
        auth=settings.auth,
        timeout=timeout,
        session_ttl=settings.session_ttl,
        https=settings.https,
    )
