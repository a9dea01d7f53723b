"""The etcd backend of the rendezvous store: ``KeyValueStore`` on etcd's v3 API.

It speaks to etcd's v3 JSON gateway (``/v3/kv/...``, ``/v3/watch``, ``/v3/lease/...``)
over HTTP/1.1 with the standard library only, so ``rallypoint[etcd]`` adds no dependency.
See ``docs/etcd.md`` for why, and for the failover, lease and TLS design.
"""

from rallypoint.store.etcd._http import Endpoint
from rallypoint.store.etcd._tls import EtcdTls
from rallypoint.store.etcd._translate import EtcdOutcomeUnknownError
from rallypoint.store.etcd._watches import EtcdWatch
from rallypoint.store.etcd.config import (
    DEFAULT_PORT,
    EtcdSettings,
    connect_from_config,
    parse_endpoints,
    settings_of,
)
from rallypoint.store.etcd.store import DEFAULT_SESSION_TTL, KEY_ROOT, EtcdStore

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SESSION_TTL",
    "KEY_ROOT",
    "Endpoint",
    "EtcdOutcomeUnknownError",
    "EtcdSettings",
    "EtcdStore",
    "EtcdTls",
    "EtcdWatch",
    "connect_from_config",
    "parse_endpoints",
    "settings_of",
]
