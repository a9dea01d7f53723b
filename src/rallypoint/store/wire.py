"""The store's wire format: a pure codec between bytes and typed messages.

Design note
-----------
Like h11, this module never sees a socket, a clock or a task: bytes go in, frozen
dataclasses come out, and the reverse. The server and the client are thin drivers.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding
one object whose ``"type"`` names the message. JSON, never a serialiser that can rebuild
arbitrary objects, because a frame comes from the network and decoding must never run
code. Decoding is strict and bounded: the length prefix is checked against ``max_frame``
as soon as its four bytes arrive, before any of the body is buffered; a frame's decoded
size is bounded by a ``DecodeBudget`` checked before ``json`` builds anything (see
``_budget``); and a failed frame leaves nothing behind (the error is kept as text, never as
an exception whose traceback would hold the frame's objects). Every field must be present
with the right JSON type, and unknown fields or types are refused (the ``Challenge``
carries a protocol version so that future changes can be negotiated instead).
``bool`` is never accepted where an integer is expected, every integer is a signed 64-bit
one (as in torch's store), and NaN or infinity never parse.

Each message class is described once, in ``_specs.SPECS``: its tag and, per field, a
loader that validates a decoded JSON value and a dumper that produces one. Both
directions read that table, so they cannot drift apart.
"""

from __future__ import annotations

import json
import struct
from typing import Final

from rallypoint.store._budget import (
    REPLY_BUDGET,
    REQUEST_BUDGET,
    SMALL_FRAME,
    DecodeBudget,
    over_budget,
)
from rallypoint.store._errors import FrameTooLargeError, StoreProtocolError
from rallypoint.store._specs import (
    CLIENT_MESSAGES,
    INT64_MAX,
    INT64_MIN,
    SERVER_MESSAGES,
    SPECS,
    TAGS,
    BadField,
    Field,
)
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
    "INT64_MAX",
    "INT64_MIN",
    "PREAMBLE",
    "PROTOCOL_VERSION",
    "REPLY_BUDGET",
    "REQUEST_BUDGET",
    "SERVER_MESSAGES",
    "AddReply",
    "AddRequest",
    "CasReply",
    "Challenge",
    "DecodeBudget",
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
PREAMBLE: Final = b"RPS1"
"""What a client sends first, before any frame: it tells our store from torch's on a shared
port (torch's client opens with a zero byte; see ``rendezvous/shared_port.py``). As a frame
header it would announce 1.3 GB, beyond any ``max_frame``, so a server can recognise and
skip it; servers accept connections without it too."""
PROTOCOL_VERSION: Final = 1
_HEADER = struct.Struct(">I")

ProtocolError = StoreProtocolError
"""The codec's error type; an alias so that callers may catch either name."""


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
    tag = TAGS[type(msg)]
    obj: dict[str, object] = {"type": tag}
    for name, _, dump in SPECS[tag][1]:
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
    spec = SPECS.get(tag) if isinstance(tag, str) else None
    if spec is None or not isinstance(tag, str):
        raise ProtocolError(f"unknown message type {tag!r}")
    cls, fields = spec
    if accept is not None and cls not in accept:
        raise ProtocolError(f"unexpected message type {tag!r} in this direction")
    return cls(**_load_fields(tag, obj, fields))


def _load_fields(tag: str, obj: dict[str, object], fields: tuple[Field, ...]) -> dict[str, object]:
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
        except BadField as exc:
            raise ProtocolError(f"field {name!r} of {tag!r} must be {exc}") from None
    return values


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)  # built once, not per frame


class FrameDecoder:
    """Incremental decoder: buffer bytes as they arrive, take whole messages one at a time.

    After it raises once, the decoder stays failed: the stream has lost its framing, so
    the only sound reaction is to close the connection.

    Args:
        max_frame: the largest frame body accepted, in bytes (see ``set_max_frame``).
        accept: the message classes allowed (``CLIENT_MESSAGES`` on a server,
            ``SERVER_MESSAGES`` on a client); None allows all.
        budget: the most one frame may decode into (``REQUEST_BUDGET`` on a server).
    """

    def __init__(
        self,
        max_frame: int = DEFAULT_MAX_FRAME,
        accept: frozenset[type] | None = None,
        budget: DecodeBudget = REPLY_BUDGET,
    ) -> None:
        self._max_frame = max_frame
        self._accept = accept
        self._budget = budget
        self._buffer = bytearray()
        self._failure: str | None = None

    @property
    def buffered(self) -> int:
        """How many bytes are waiting to be taken as messages."""
        return len(self._buffer)

    def set_max_frame(self, max_frame: int) -> None:
        """Change the frame limit for the frames not taken yet (e.g. after a handshake)."""
        self._max_frame = max_frame

    def discard(self) -> None:
        """Drop every buffered byte (the connection is closing)."""
        self._buffer.clear()

    def receive(self, data: bytes) -> None:
        """Buffer the next bytes of the stream (any length, including empty)."""
        self._buffer += data

    def next_message(self) -> Message | None:
        """Take the next complete message, or None until more bytes arrive.

        Raises:
            ProtocolError: the stream broke the format; see the class docstring.
        """
        if self._failure is not None:
            raise ProtocolError(f"decoder already failed: {self._failure}")
        try:
            body = self._next_body()
            return None if body is None else self._decode(body)
        except ProtocolError as exc:
            self._failure = str(exc)
            self._buffer.clear()
            raise

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes and return every message they complete, in order.

        Raises:
            ProtocolError: the stream broke the format; see the class docstring.
        """
        self.receive(data)
        messages: list[Message] = []
        while (msg := self.next_message()) is not None:
            messages.append(msg)
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
        problem = None if len(body) <= SMALL_FRAME else over_budget(body, self._budget)
        obj: object = None
        if problem is None:
            try:
                obj = _JSON.decode(body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                problem = f"frame is not valid UTF-8: {exc.reason}"
            except json.JSONDecodeError as exc:
                problem = f"frame is not valid JSON: {exc.msg}"
            except ValueError as exc:  # NaN/Infinity, or an integer beyond int_max_str_digits
                problem = f"frame is not acceptable JSON: {exc}"
            except RecursionError:
                problem = "frame JSON is nested too deeply"
        if problem is not None:  # raised here, outside the handlers: no chained context
            raise ProtocolError(problem)
        return decode_message(obj, self._accept)
