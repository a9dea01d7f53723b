"""The rendezvous key-value store: wire codec, server, client and secret handling.

One agent (or a standalone process) hosts a ``StoreServer``; every agent talks to it with
a ``StoreClient``. See ``docs/store.md`` for the wire format and the security design, and
``store/_errors.py`` for the exception tree.
"""

from rallypoint.store._errors import (
    ErrorCode,
    FrameTooLargeError,
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreAuthError,
    StoreConnectionError,
    StoreError,
    StoreProtocolError,
    StoreRequestError,
    StoreSecretError,
    StoreTimeoutError,
)
from rallypoint.store.api import CasResult, KeyValueStore, RangeResult, WatchStream
from rallypoint.store.client import StoreClient, Watch
from rallypoint.store.clock import MonotonicClock
from rallypoint.store.messages import EventKind, KeyValue, WatchEvent
from rallypoint.store.secret import secret_from_env, secret_from_file
from rallypoint.store.server import StoreServer

__all__ = [
    "CasResult",
    "ErrorCode",
    "EventKind",
    "FrameTooLargeError",
    "KeyValue",
    "KeyValueStore",
    "LeaseNotFoundError",
    "MonotonicClock",
    "RangeResult",
    "RevisionCompactedError",
    "StoreAuthError",
    "StoreClient",
    "StoreConnectionError",
    "StoreError",
    "StoreProtocolError",
    "StoreRequestError",
    "StoreSecretError",
    "StoreServer",
    "StoreTimeoutError",
    "Watch",
    "WatchEvent",
    "WatchStream",
    "secret_from_env",
    "secret_from_file",
]
