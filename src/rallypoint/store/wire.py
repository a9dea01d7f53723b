"""The store's wire format: a pure codec between bytes and typed messages.

Design note
-----------
Like h11, this module never sees a socket, a clock or a task: bytes go in, frozen
dataclasses come out, and the reverse. The server and the client are thin drivers.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding
one object whose ``"type"`` names the message. JSON, never a serialiser that can rebuild
arbitrary objects, because a frame comes from the network and decoding must never run
code. Decoding is strict: the length prefix is checked against ``max_frame`` as soon as
its four bytes arrive, before any of the body is buffered, so a peer cannot make us hold
more than ``max_frame`` bytes. Every field must be present with the right JSON type, and
unknown fields or types are refused (the ``Challenge`` carries a protocol version so that
future changes can be negotiated instead).
``bool`` is never accepted where an integer is expected, and NaN or infinity never parse.

Each message class is described once, in ``_SPECS``: its tag and, per field, a loader that
validates a decoded JSON value and a dumper that produces one. Both directions read that
table, so they cannot drift apart.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Callable
from typing import Any, Final, TypeVar

from rallypoint.store._errors import ErrorCode, FrameTooLargeError, StoreProtocolError
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
    Request,
    UnwatchRequest,
    WatchEvent,
    WatchReply,
    WatchRequest,
    Welcome,
)

__all__ = [
    "CLIENT_MESSAGES",
    "DEFAULT_MAX_FRAME",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "AddReply",
    "AddRequest",
    "CasReply",
    "Challenge",
    "DeleteRequest",
    "ErrorReply",
    "EventKind",
    "FrameDecoder",
    "GetReply",
    "GetRequest",
    "Hello",
    "KeyValue",
    "LeaseGrantReply",
    "LeaseGrantRequest",
    "LeaseKeepAliveRequest",
    "LeaseRevokeRequest",
    "Message",
    "OkReply",
    "ProtocolError",
    "PutRequest",
    "RangeReply",
    "RangeRequest",
    "Refused",
    "Request",
    "UnwatchRequest",
    "WatchEvent",
    "WatchReply",
    "WatchRequest",
    "Welcome",
    "decode_message",
    "encode",
]

DEFAULT_MAX_FRAME: Final = 16 << 20  # a round of 10,000 nodes fits; see docs/store.md
PROTOCOL_VERSION: Final = 1
_HEADER = struct.Struct(">I")

ProtocolError = StoreProtocolError
"""The codec's error type; an alias so that callers may catch either name."""


# --- field loaders and dumpers -----------------------------------------------------------

_T = TypeVar("_T")
_Loader = Callable[[object], object]
_Dumper = Callable[[Any], object]


class _BadField(Exception):
    """Internal: a field value has the wrong JSON type; carries what was expected."""


def _int(value: object) -> int:
    if type(value) is not int:
        raise _BadField("an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise _BadField("a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _BadField("a boolean")
    return value


def _number(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise _BadField("a finite number")
    return float(value)  # type: ignore[arg-type]


def _optional(load: Callable[[object], _T]) -> Callable[[object], _T | None]:
    return lambda value: None if value is None else load(value)


def _error_code(value: object) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        raise _BadField("a known error code") from None


def _event_kind(value: object) -> EventKind:
    try:
        return EventKind(value)
    except ValueError:
        raise _BadField("'put' or 'delete'") from None


def _entries(value: object) -> tuple[KeyValue, ...]:
    if not isinstance(value, list):
        raise _BadField("a list of [key, value, revision]")
    return tuple(_entry(item) for item in value)


def _entry(item: object) -> KeyValue:
    if not isinstance(item, list) or len(item) != 3:
        raise _BadField("a list of [key, value, revision]")
    return KeyValue(_str(item[0]), _str(item[1]), _int(item[2]))


def _same(value: object) -> object:
    return value


def _enum_value(value: enum.Enum) -> object:
    return value.value


def _dump_entries(entries: tuple[KeyValue, ...]) -> object:
    return [[e.key, e.value, e.revision] for e in entries]


_Field = tuple[str, _Loader, _Dumper]


def _f(name: str, load: _Loader, dump: _Dumper = _same) -> _Field:
    return (name, load, dump)


_ID = _f("id", _int)
_KEY = _f("key", _str)
_EXPECTED = _f("expected_revision", _optional(_int))

_SPECS: Final[dict[str, tuple[Callable[..., Message], tuple[_Field, ...]]]] = {
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
_TAGS: Final[dict[object, str]] = {cls: tag for tag, (cls, _) in _SPECS.items()}

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
    cls for cls in _TAGS if isinstance(cls, type) and cls not in CLIENT_MESSAGES
)
"""Message classes a client accepts from a server."""


# --- encoding ------------------------------------------------------------------------------


def encode(msg: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Encode one message as a length-prefixed frame.

    Args:
        msg: the message.
        max_frame: the largest body allowed, in bytes.

    Returns:
        The 4-byte big-endian length followed by the UTF-8 JSON body.

    Raises:
        FrameTooLargeError: the body would exceed ``max_frame``.
    """
    tag = _TAGS[type(msg)]
    obj: dict[str, object] = {"type": tag}
    for name, _, dump in _SPECS[tag][1]:
        obj[name] = dump(getattr(msg, name))
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
    if len(body) > max_frame:
        raise FrameTooLargeError(
            f"a {tag!r} message of {len(body)} bytes exceeds the {max_frame}-byte frame limit"
        )
    return _HEADER.pack(len(body)) + body


# --- decoding ------------------------------------------------------------------------------


def decode_message(obj: object, accept: frozenset[type] | None = None) -> Message:
    """Build a typed message from a decoded JSON value.

    Args:
        obj: the value ``json.loads`` produced from one frame.
        accept: the message classes allowed here; None allows all.

    Returns:
        The message.

    Raises:
        ProtocolError: not an object, an unknown or unexpected type, or bad fields.
    """
    if not isinstance(obj, dict):
        raise ProtocolError(f"a frame must hold a JSON object, not {type(obj).__name__}")
    tag = obj.get("type")
    spec = _SPECS.get(tag) if isinstance(tag, str) else None
    if spec is None or not isinstance(tag, str):
        raise ProtocolError(f"unknown message type {tag!r}")
    cls, fields = spec
    if accept is not None and cls not in accept:
        raise ProtocolError(f"unexpected message type {tag!r} in this direction")
    return cls(**_load_fields(tag, obj, fields))


def _load_fields(tag: str, obj: dict[str, object], fields: tuple[_Field, ...]) -> dict[str, object]:
    names = {name for name, _, _ in fields}
    extra = sorted(set(obj) - names - {"type"})
    if extra:
        raise ProtocolError(f"{tag!r} message has unknown fields {extra}")
    values: dict[str, object] = {}
    for name, load, _ in fields:
        if name not in obj:
            raise ProtocolError(f"{tag!r} message is missing field {name!r}")
        try:
            values[name] = load(obj[name])
        except _BadField as exc:
            raise ProtocolError(f"field {name!r} of {tag!r} must be {exc}") from None
    return values


def _reject_constant(name: str) -> object:
    raise ProtocolError(f"{name} is not valid JSON")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)  # built once, not per frame


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages back.

    After it raises once, the decoder stays failed: the stream has lost its framing, so
    the only sound reaction is to close the connection.

    Args:
        max_frame: the largest frame body accepted, in bytes.
        accept: the message classes allowed (``CLIENT_MESSAGES`` on a server,
            ``SERVER_MESSAGES`` on a client); None allows all.
    """

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, accept: frozenset[type] | None = None
    ) -> None:
        self._max_frame = max_frame
        self._accept = accept
        self._buffer = bytearray()
        self._failure: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """How many bytes are waiting for the rest of their frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes and return every message they complete, in order.

        Args:
            data: the next bytes of the stream (any length, including empty).

        Returns:
            The completed messages, possibly none.

        Raises:
            ProtocolError: the stream broke the format; see the class docstring.
        """
        if self._failure is not None:
            raise ProtocolError(f"decoder already failed: {self._failure}")
        self._buffer += data
        messages: list[Message] = []
        try:
            while (body := self._next_body()) is not None:
                messages.append(self._decode(body))
        except ProtocolError as exc:
            self._failure = exc
            self._buffer.clear()
            raise
        return messages

    def _next_body(self) -> bytes | None:
        if len(self._buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self._max_frame:
            raise FrameTooLargeError(
                f"frame of {length} bytes exceeds the {self._max_frame}-byte limit"
            )
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return body

    def _decode(self, body: bytes) -> Message:
        try:
            obj = _JSON.decode(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"frame is not valid UTF-8: {exc.reason}") from exc
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"frame is not valid JSON: {exc.msg}") from exc
        except ValueError as exc:  # e.g. an integer literal beyond int_max_str_digits
            raise ProtocolError(f"frame is not acceptable JSON: {exc}") from exc
        except RecursionError as exc:
            raise ProtocolError("frame JSON is nested too deeply") from exc
        return decode_message(obj, self._accept)
