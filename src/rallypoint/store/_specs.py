"""The message table of the wire format: per message type, its tag and its fields.

Each message class is described once, in ``SPECS``: its tag and, per field, a loader that
validates a decoded JSON value and a dumper that produces one. ``wire`` reads that table
in both directions, so they cannot drift apart.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, Final, TypeVar

from rallypoint.store._errors import ErrorCode
from rallypoint.store.messages import (
    AddReply,
    AddRequest,
    CasReply,
    Challenge,
    DeleteRequest,
    ErrorReply,
    EventKind,
    GetReply,
    GetRequest,
    Hello,
    KeyValue,
    LeaseGrantReply,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    Message,
    OkReply,
    PutRequest,
    RangeReply,
    RangeRequest,
    Refused,
    UnwatchRequest,
    WatchEvent,
    WatchReply,
    WatchRequest,
    Welcome,
)

__all__ = [
    "CLIENT_MESSAGES",
    "INT64_MAX",
    "INT64_MIN",
    "SERVER_MESSAGES",
    "SPECS",
    "TAGS",
    "BadField",
    "Field",
]

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1

# --- field loaders and dumpers -----------------------------------------------------------

_T = TypeVar("_T")
_Loader = Callable[[object], object]
_Dumper = Callable[[Any], object]


class BadField(Exception):
    """Internal: a field value has the wrong JSON type; carries what was expected."""


def _int(value: object) -> int:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise BadField("a signed 64-bit integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise BadField("a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadField("a boolean")
    return value


def _number(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise BadField("a finite number")
    return float(value)  # type: ignore[arg-type]


def _optional(load: Callable[[object], _T]) -> Callable[[object], _T | None]:
    return lambda value: None if value is None else load(value)


def _error_code(value: object) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        raise BadField("a known error code") from None


def _event_kind(value: object) -> EventKind:
    try:
        return EventKind(value)
    except ValueError:
        raise BadField("'put' or 'delete'") from None


def _entries(value: object) -> tuple[KeyValue, ...]:
    if not isinstance(value, list):
        raise BadField("a list of [key, value, revision]")
    return tuple(_entry(item) for item in value)


def _entry(item: object) -> KeyValue:
    if not isinstance(item, list) or len(item) != 3:
        raise BadField("a list of [key, value, revision]")
    return KeyValue(_str(item[0]), _str(item[1]), _int(item[2]))


def _same(value: object) -> object:
    return value


def _enum_value(value: enum.Enum) -> object:
    return value.value


def _dump_entries(entries: tuple[KeyValue, ...]) -> object:
    return [[e.key, e.value, e.revision] for e in entries]


Field = tuple[str, _Loader, _Dumper]


def _f(name: str, load: _Loader, dump: _Dumper = _same) -> Field:
    return (name, load, dump)


_ID = _f("id", _int)
_KEY = _f("key", _str)
_EXPECTED = _f("expected_revision", _optional(_int))

SPECS: Final[dict[str, tuple[Callable[..., Message], tuple[Field, ...]]]] = {
    "challenge": (Challenge, (_f("nonce", _str), _f("server_version", _int))),
    "hello": (Hello, (_f("run_id", _str), _f("proof", _str))),
    "welcome": (Welcome, ()),
    "refused": (Refused, (_f("reason", _str),)),
    "get": (GetRequest, (_ID, _KEY)),
    "range": (RangeRequest, (_ID, _f("prefix", _str))),
    "put": (PutRequest, (_ID, _KEY, _f("value", _str), _EXPECTED, _f("lease", _optional(_int)))),
    "delete": (DeleteRequest, (_ID, _KEY, _EXPECTED)),
    "add": (AddRequest, (_ID, _KEY, _f("amount", _int))),
    "watch": (WatchRequest, (_ID, _f("prefix", _str), _f("start_revision", _optional(_int)))),
    "unwatch": (UnwatchRequest, (_ID, _f("watch_id", _int))),
    "lease_grant": (LeaseGrantRequest, (_ID, _f("ttl", _number))),
    "lease_keepalive": (LeaseKeepAliveRequest, (_ID, _f("lease", _int))),
    "lease_revoke": (LeaseRevokeRequest, (_ID, _f("lease", _int))),
    "get_reply": (GetReply, (_ID, _f("value", _optional(_str)), _f("revision", _int))),
    "range_reply": (
        RangeReply,
        (_ID, _f("entries", _entries, _dump_entries), _f("revision", _int)),
    ),
    "cas_reply": (
        CasReply,
        (_ID, _f("ok", _bool), _f("revision", _int), _f("value", _optional(_str))),
    ),
    "add_reply": (AddReply, (_ID, _f("value", _int), _f("revision", _int))),
    "watch_reply": (WatchReply, (_ID, _f("watch_id", _int))),
    "lease_grant_reply": (LeaseGrantReply, (_ID, _f("lease", _int), _f("ttl", _number))),
    "ok_reply": (OkReply, (_ID,)),
    "error": (
        ErrorReply,
        (_ID, _f("code", _error_code, _enum_value), _f("message", _str)),
    ),
    "event": (
        WatchEvent,
        (
            _f("watch_id", _int),
            _KEY,
            _f("value", _optional(_str)),
            _f("revision", _int),
            _f("kind", _event_kind, _enum_value),
        ),
    ),
}
TAGS: Final[dict[object, str]] = {cls: tag for tag, (cls, _) in SPECS.items()}

CLIENT_MESSAGES: Final[frozenset[type]] = frozenset(
    {Hello}
    | {
        GetRequest,
        RangeRequest,
        PutRequest,
        DeleteRequest,
        AddRequest,
        WatchRequest,
        UnwatchRequest,
        LeaseGrantRequest,
        LeaseKeepAliveRequest,
        LeaseRevokeRequest,
    }
)
"""Message classes a server accepts from a client."""

SERVER_MESSAGES: Final[frozenset[type]] = frozenset(
    cls for cls in TAGS if isinstance(cls, type) and cls not in CLIENT_MESSAGES
)
"""Message classes a client accepts from a server."""
