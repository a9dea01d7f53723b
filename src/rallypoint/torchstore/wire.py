"""torch's TCPStore wire protocol (2.13, libuv backend), server side, as a pure codec.

Design note
-----------
As ``store/wire.py`` for our own store: bytes in, frozen dataclasses out, and the reverse,
with no socket, clock or task anywhere. ``docs/torch-store.md`` describes the protocol
byte by byte; in short, a request is one byte of query type followed by its arguments:

* a *string* or *bytes* argument is a little-endian ``uint64`` length then that many bytes;
* a *key list* is a ``uint64`` count then that many strings;
* a *pair list* (``MULTI_SET``) is a count then that many key, value pairs;
* integers are little-endian ``int64`` (``ADD``) or ``uint32`` (``VALIDATE``, ``PING``).

There is no frame length: a request ends where its last argument ends, so the decoder
parses field by field and, when the buffer runs out mid-request, remembers how many bytes
it needs at least before trying again (a 16 MiB value arriving in 64 KiB pieces is parsed
twice, not 256 times). Every length and count is checked against the limits as soon as
its eight bytes arrive, before anything is buffered for it, so a peer cannot make us hold
more than ``max_request`` bytes.

Each request class is described once, in ``_SPECS``: its query type and its fields. Both
``decode`` (server) and ``encode_request`` (tests, the benchmark) read that table.
Replies are encoded by ``encode_reply``, from the reply's class, through ``_REPLIES``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_LIMITS",
    "VALIDATION_MAGIC",
    "Add",
    "Append",
    "BytesReply",
    "CancelWait",
    "Check",
    "CheckReply",
    "CompareSet",
    "DeleteKey",
    "Get",
    "IntReply",
    "KeysReply",
    "Limits",
    "ListKeys",
    "MultiGet",
    "MultiSet",
    "NumKeys",
    "Ping",
    "PingReply",
    "QueryType",
    "QueueLen",
    "QueuePop",
    "QueuePopReply",
    "QueuePush",
    "Reply",
    "Request",
    "RequestDecoder",
    "Set",
    "TorchProtocolError",
    "Validate",
    "ValuesReply",
    "Wait",
    "WaitReply",
    "WaitResponse",
    "encode_reply",
    "encode_request",
]

VALIDATION_MAGIC: Final = 0x3C85F7CE
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")


class TorchProtocolError(Exception):
    """A request broke the protocol; the only sound reaction is to close the connection."""


class QueryType(enum.IntEnum):
    """The first byte of every request (``QueryType`` in torch's TCPStoreBackend.hpp)."""

    VALIDATE = 0
    SET = 1
    COMPARE_SET = 2
    GET = 3
    ADD = 4
    CHECK = 5
    WAIT = 6
    GETNUMKEYS = 7
    DELETE_KEY = 8
    APPEND = 9
    MULTI_GET = 10
    MULTI_SET = 11
    CANCEL_WAIT = 12
    PING = 13
    QUEUE_PUSH = 14
    QUEUE_POP = 15
    QUEUE_LEN = 16
    LIST_KEYS = 17


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validate:
    """The first request of every connection: the protocol's magic number."""

    magic: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Sent right after ``Validate``; the reply echoes the nonce."""

    nonce: int


@dataclass(frozen=True, slots=True)
class Set:
    """Set a key (no reply)."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class CompareSet:
    """Set ``key`` to ``desired`` if it holds ``expected`` (absent counts as empty)."""

    key: bytes
    expected: bytes
    desired: bytes


@dataclass(frozen=True, slots=True)
class Get:
    """A key's value (the client waits for the key first)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Add:
    """Add to the decimal integer at ``key``; the reply is the new value."""

    key: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class Check:
    """Whether every key exists, without waiting."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """Reply once every key exists; the client times out and sends ``CancelWait``."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NumKeys:
    """How many keys the store holds (queues not counted)."""


@dataclass(frozen=True, slots=True)
class DeleteKey:
    """Delete a key; the reply is how many were deleted (0 or 1)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Append:
    """Append to a key's value, creating it (no reply)."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class MultiGet:
    """Several values at once, in order (the client waits for the keys first)."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MultiSet:
    """Set several keys at once (no reply)."""

    keys: tuple[bytes, ...]
    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CancelWait:
    """End this connection's pending waits; always answered ``WAIT_CANCELED``."""


@dataclass(frozen=True, slots=True)
class QueuePush:
    """Append a value to the queue named ``key`` (no reply)."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class QueuePop:
    """Take the oldest value of a queue, if any."""

    key: bytes


@dataclass(frozen=True, slots=True)
class QueueLen:
    """How many values a queue holds."""

    key: bytes


@dataclass(frozen=True, slots=True)
class ListKeys:
    """Every key the store holds (queues not listed)."""


Request = (
    Validate
    | Ping
    | Set
    | CompareSet
    | Get
    | Add
    | Check
    | Wait
    | NumKeys
    | DeleteKey
    | Append
    | MultiGet
    | MultiSet
    | CancelWait
    | QueuePush
    | QueuePop
    | QueueLen
    | ListKeys
)


# --- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BytesReply:
    """One value (``GET``, ``COMPARE_SET``)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class IntReply:
    """One ``int64`` (``ADD``, ``GETNUMKEYS``, ``DELETE_KEY``, ``QUEUE_LEN``)."""

    value: int


@dataclass(frozen=True, slots=True)
class CheckReply:
    """``READY`` (0) when every key exists, else ``NOT_READY`` (1)."""

    ready: bool


class WaitResponse(enum.IntEnum):
    """The one byte that answers ``WAIT`` and ``CANCEL_WAIT``."""

    STOP_WAITING = 0
    WAIT_CANCELED = 1


@dataclass(frozen=True, slots=True)
class WaitReply:
    """A wait ended: its keys exist, or it was cancelled."""

    response: WaitResponse


@dataclass(frozen=True, slots=True)
class PingReply:
    """The nonce of the ``Ping``."""

    nonce: int


@dataclass(frozen=True, slots=True)
class ValuesReply:
    """The values of a ``MULTI_GET``, in order, without a count."""

    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class KeysReply:
    """``LIST_KEYS``: a count, then the keys."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class QueuePopReply:
    """``QUEUE_POP``: a count (0 or 1), then the value if there is one."""

    value: bytes | None


Reply = (
    BytesReply | IntReply | CheckReply | WaitReply | PingReply | ValuesReply | KeysReply
) | QueuePopReply


# --- limits ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may hold.

    Attributes:
        max_request: the largest request, in bytes (every string of it included).
        max_keys: the most keys one ``CHECK``, ``WAIT``, ``MULTI_GET`` or ``MULTI_SET`` names.
    """

    max_request: int = 64 << 20
    max_keys: int = 1 << 20


DEFAULT_LIMITS: Final = Limits()


# --- fields: one reader and one writer per kind -----------------------------------------


class _Incomplete(Exception):
    """Internal: the buffer ends inside this request; ``need`` bytes are the minimum."""

    def __init__(self, need: int) -> None:
        self.need = need


class _Reader:
    """Reads the fields of one request from ``buf`` starting at ``pos``."""

    __slots__ = ("buf", "limits", "pos", "start")

    def __init__(self, buf: bytearray, pos: int, limits: Limits) -> None:
        self.buf, self.pos, self.start, self.limits = buf, pos, pos, limits

    def take(self, size: int) -> int:
        """Advance past ``size`` bytes; return where they start."""
        at, end = self.pos, self.pos + size
        if end - self.start > self.limits.max_request:
            raise TorchProtocolError(
                f"request larger than the {self.limits.max_request}-byte limit"
            )
        if end > len(self.buf):
            raise _Incomplete(end - self.start)
        self.pos = end
        return at

    def u32(self) -> int:
        value: int = _U32.unpack_from(self.buf, self.take(4))[0]
        return value

    def i64(self) -> int:
        value: int = _I64.unpack_from(self.buf, self.take(8))[0]
        return value

    def string(self) -> bytes:
        size: int = _U64.unpack_from(self.buf, self.take(8))[0]
        at = self.take(size)
        return bytes(self.buf[at : at + size])

    def count(self) -> int:
        size: int = _U64.unpack_from(self.buf, self.take(8))[0]
        if size > self.limits.max_keys:
            raise TorchProtocolError(
                f"{size} keys in one request; the limit is {self.limits.max_keys}"
            )
        return size

    def keys(self) -> tuple[bytes, ...]:
        return tuple(self.string() for _ in range(self.count()))

    def pairs(self) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        flat = [self.string() for _ in range(2 * self.count())]
        return tuple(flat[0::2]), tuple(flat[1::2])


def _string(value: bytes) -> bytes:
    return _U64.pack(len(value)) + value


def _keys(values: tuple[bytes, ...]) -> bytes:
    return _U64.pack(len(values)) + b"".join(_string(v) for v in values)


# A field is (attribute names, reader, writer). Most kinds fill one attribute; ``pairs``
# fills two (the keys and the values of a MULTI_SET).
_Field = tuple[tuple[str, ...], Callable[[_Reader], object], Callable[..., bytes]]

_KEY: Final[_Field] = (("key",), _Reader.string, _string)
_VALUE: Final[_Field] = (("value",), _Reader.string, _string)
_KEYS: Final[_Field] = (("keys",), _Reader.keys, _keys)


def _pairs_bytes(keys: tuple[bytes, ...], values: tuple[bytes, ...]) -> bytes:
    body = b"".join(_string(k) + _string(v) for k, v in zip(keys, values, strict=True))
    return _U64.pack(len(keys)) + body


_SPECS: Final[dict[QueryType, tuple[type, tuple[_Field, ...]]]] = {
    QueryType.VALIDATE: (Validate, ((("magic",), _Reader.u32, _U32.pack),)),
    QueryType.PING: (Ping, ((("nonce",), _Reader.u32, _U32.pack),)),
    QueryType.SET: (Set, (_KEY, _VALUE)),
    QueryType.COMPARE_SET: (
        CompareSet,
        (_KEY, (("expected",), _Reader.string, _string), (("desired",), _Reader.string, _string)),
    ),
    QueryType.GET: (Get, (_KEY,)),
    QueryType.ADD: (Add, (_KEY, (("amount",), _Reader.i64, _I64.pack))),
    QueryType.CHECK: (Check, (_KEYS,)),
    QueryType.WAIT: (Wait, (_KEYS,)),
    QueryType.GETNUMKEYS: (NumKeys, ()),
    QueryType.DELETE_KEY: (DeleteKey, (_KEY,)),
    QueryType.APPEND: (Append, (_KEY, _VALUE)),
    QueryType.MULTI_GET: (MultiGet, (_KEYS,)),
    QueryType.MULTI_SET: (MultiSet, ((("keys", "values"), _Reader.pairs, _pairs_bytes),)),
    QueryType.CANCEL_WAIT: (CancelWait, ()),
    QueryType.QUEUE_PUSH: (QueuePush, (_KEY, _VALUE)),
    QueryType.QUEUE_POP: (QueuePop, (_KEY,)),
    QueryType.QUEUE_LEN: (QueueLen, (_KEY,)),
    QueryType.LIST_KEYS: (ListKeys, ()),
}
_BY_BYTE: Final = {int(q): spec for q, spec in _SPECS.items()}
_TYPES: Final = {cls: (q, fields) for q, (cls, fields) in _SPECS.items()}


def encode_request(request: Request) -> bytes:
    """The bytes torch's client sends for ``request`` (for tests and the benchmark)."""
    query, fields = _TYPES[type(request)]
    parts = [bytes((query,))]
    for names, _, write in fields:
        parts.append(write(*(getattr(request, name) for name in names)))
    return b"".join(parts)


# --- decoding --------------------------------------------------------------------------------


class RequestDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole requests back, in order.

    After it raises once, it stays failed: the stream has lost its framing.

    Args:
        limits: the bounds of one request.
    """

    __slots__ = ("_buffer", "_failed", "_limits", "_need")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._need = 1  # bytes the next request needs at least
        self._failed = False

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their request."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Request]:
        """Add bytes and return every request they complete.

        Raises:
            TorchProtocolError: an unknown query type, or a request beyond the limits.
        """
        if self._failed:
            raise TorchProtocolError("decoder already failed")
        self._buffer += data
        if len(self._buffer) < self._need:
            return []
        try:
            return self._drain()
        except TorchProtocolError:
            self._failed = True
            self._buffer.clear()
            raise

    def _drain(self) -> list[Request]:
        buf, pos, requests = self._buffer, 0, []
        while pos < len(buf):
            try:
                request, pos = self._one(buf, pos)
            except _Incomplete as short:
                self._need = short.need
                break
            requests.append(request)
        else:
            self._need = 1
        del buf[:pos]
        return requests

    def _one(self, buf: bytearray, pos: int) -> tuple[Request, int]:
        spec = _BY_BYTE.get(buf[pos])
        if spec is None:
            raise TorchProtocolError(f"unknown query type {buf[pos]}")
        cls, fields = spec
        reader = _Reader(buf, pos, self._limits)
        reader.take(1)
        values: list[object] = []
        for names, read, _ in fields:
            value = read(reader)
            values.extend(value if len(names) > 1 else (value,))  # type: ignore[arg-type]
        request: Request = cls(*values)
        return request, reader.pos


# --- replies ---------------------------------------------------------------------------------


def _queue_pop(reply: QueuePopReply) -> bytes:
    return _U64.pack(0) if reply.value is None else _U64.pack(1) + _string(reply.value)


_REPLIES: Final[dict[type, Callable[..., bytes]]] = {
    BytesReply: lambda r: _string(r.value),
    IntReply: lambda r: _I64.pack(r.value),
    CheckReply: lambda r: b"\x00" if r.ready else b"\x01",
    WaitReply: lambda r: bytes((r.response,)),
    PingReply: lambda r: _U32.pack(r.nonce),
    ValuesReply: lambda r: b"".join(_string(v) for v in r.values),
    KeysReply: lambda r: _keys(r.keys),
    QueuePopReply: _queue_pop,
}


def encode_reply(reply: Reply) -> bytes:
    """The bytes torch's client expects for ``reply``."""
    return _REPLIES[type(reply)](reply)
