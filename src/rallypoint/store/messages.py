"""Typed messages of the store protocol: frozen, slotted dataclasses, one per frame type.

The codec that turns them into bytes and back lives in ``wire.py``, which re-exports
every name here; import from there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rallypoint.store._errors import ErrorCode


class EventKind(enum.Enum):
    """What happened to a key in a ``WatchEvent``."""

    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key with its value and mod revision (the revision of its last change)."""

    key: str
    value: str
    revision: int


# --- handshake -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """Server -> client, first frame: a fresh nonce to prove the secret against."""

    nonce: str
    server_version: int


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server: the run id and hex HMAC-SHA256(secret, nonce + run_id), or ""."""

    run_id: str
    proof: str


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server -> client: the handshake succeeded; requests may follow."""


@dataclass(frozen=True, slots=True)
class Refused:
    """Server -> client, then close: the handshake (or the connection) is refused."""

    reason: str


# --- requests (client -> server); each carries an id echoed by its reply -------------


@dataclass(frozen=True, slots=True)
class GetRequest:
    """Read one key."""

    id: int
    key: str


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """Read every key starting with ``prefix``."""

    id: int
    prefix: str


@dataclass(frozen=True, slots=True)
class PutRequest:
    """Compare-and-set: None = always, 0 = only if absent, N = only if mod revision is N."""

    id: int
    key: str
    value: str
    expected_revision: int | None
    lease: int | None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete a key, under the same condition as ``PutRequest``."""

    id: int
    key: str
    expected_revision: int | None


@dataclass(frozen=True, slots=True)
class AddRequest:
    """Add ``amount`` to the decimal integer stored at ``key`` (absent counts as 0)."""

    id: int
    key: str
    amount: int


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """Push later changes under ``prefix``; replay retained ones after ``start_revision``."""

    id: int
    prefix: str
    start_revision: int | None


@dataclass(frozen=True, slots=True)
class UnwatchRequest:
    """Stop a watch."""

    id: int
    watch_id: int


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    """Create a lease that ends ``ttl`` seconds after its last keep-alive."""

    id: int
    ttl: float


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest:
    """Restart a lease's TTL."""

    id: int
    lease: int


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    """End a lease now, deleting its keys."""

    id: int
    lease: int


# --- replies (server -> client) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetReply:
    """The key's value and mod revision; ``value`` None and revision 0 when absent."""

    id: int
    value: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class RangeReply:
    """The keys under a prefix, sorted, and the store's revision when read."""

    id: int
    entries: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class CasReply:
    """Outcome of a put or delete, with the key's current revision and value after it."""

    id: int
    ok: bool
    revision: int
    value: str | None


@dataclass(frozen=True, slots=True)
class AddReply:
    """The counter's new value and the key's new mod revision."""

    id: int
    value: int
    revision: int


@dataclass(frozen=True, slots=True)
class WatchReply:
    """The new watch's id; replayed events, if any, follow this reply."""

    id: int
    watch_id: int


@dataclass(frozen=True, slots=True)
class LeaseGrantReply:
    """The new lease's id and TTL."""

    id: int
    lease: int
    ttl: float


@dataclass(frozen=True, slots=True)
class OkReply:
    """The request (unwatch, keep-alive, revoke) succeeded."""

    id: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The request was rejected; the connection stays open."""

    id: int
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """Pushed by the server: a change under a watched prefix (value None when deleted)."""

    watch_id: int
    key: str
    value: str | None
    revision: int
    kind: EventKind


Request = (
    GetRequest
    | RangeRequest
    | PutRequest
    | DeleteRequest
    | AddRequest
    | WatchRequest
    | UnwatchRequest
    | LeaseGrantRequest
    | LeaseKeepAliveRequest
    | LeaseRevokeRequest
)
Reply = (
    GetReply
    | RangeReply
    | CasReply
    | AddReply
    | WatchReply
    | LeaseGrantReply
    | OkReply
    | ErrorReply
)
Message = Challenge | Hello | Welcome | Refused | Request | Reply | WatchEvent
