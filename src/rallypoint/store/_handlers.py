"""Maps each request to a call on ``StoreState`` and the reply it produces (pure).

Every field has been type-checked by the codec; the values are checked here and in the
state, and anything wrong is a ``StoreRequestError`` (an ``error`` reply), never another
exception. A put is refused with ``too_large`` *before* it is applied when its reply or
the watch event it causes would not fit in one frame.
"""

from __future__ import annotations

from rallypoint.store._errors import ErrorCode, FrameTooLargeError, StoreRequestError
from rallypoint.store.state import StoreState
from rallypoint.store.wire import (
    INT64_MAX,
    AddReply,
    AddRequest,
    CasReply,
    DeleteRequest,
    EventKind,
    GetReply,
    GetRequest,
    LeaseGrantReply,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    Message,
    OkReply,
    PutRequest,
    RangeReply,
    RangeRequest,
    Request,
    UnwatchRequest,
    WatchEvent,
    WatchReply,
    WatchRequest,
    encode,
)

_ESCAPE_MAX = 12  # the most JSON bytes one str character becomes: a surrogate pair escaped
_FRAME_SLACK = 256  # field names and numbers around a key and a value, generously


def handle(state: StoreState, owner: int, request: Request, now: float, max_reply: int) -> Message:
    """Apply one request to the state and build its reply.

    Args:
        state: the store's state.
        owner: the session the request came from (owns leases and watches it creates).
        request: the request.
        now: the current monotonic time.
        max_reply: the largest frame body a reply or event may be, in bytes.

    Returns:
        The reply carrying the request's id.

    Raises:
        StoreRequestError: the request was rejected; the caller sends an ``ErrorReply``.
    """
    rid = request.id
    match request:
        case GetRequest(key=key):
            kv = state.get(key)
            return GetReply(rid, None, 0) if kv is None else GetReply(rid, kv.value, kv.revision)
        case RangeRequest(prefix=prefix):
            entries, revision = state.range(prefix, max_reply)
            return RangeReply(rid, entries, revision)
        case PutRequest(key=key, value=value, expected_revision=expected, lease=lease):
            _check_fits(key, value, max_reply)
            result = state.put(key, value, expected, lease)
            return CasReply(rid, result.ok, result.revision, result.value)
        case DeleteRequest(key=key, expected_revision=expected):
            result = state.delete(key, expected)
            return CasReply(rid, result.ok, result.revision, result.value)
        case AddRequest(key=key, amount=amount):
            kv = state.add(key, amount)
            return AddReply(rid, int(kv.value), kv.revision)
        case WatchRequest(prefix=prefix, start_revision=start):
            return WatchReply(rid, state.watch(owner, prefix, start))
        case UnwatchRequest(watch_id=watch_id):
            state.unwatch(owner, watch_id)
        case LeaseGrantRequest(ttl=ttl):
            return LeaseGrantReply(rid, state.grant(owner, ttl, now), ttl)
        case LeaseKeepAliveRequest(lease=lease):
            state.keepalive(lease, now)
        case LeaseRevokeRequest(lease=lease):
            state.revoke(owner, lease)
    return OkReply(rid)


def _check_fits(key: str, value: str, max_reply: int) -> None:
    """Refuse a put whose reply or watch event would exceed ``max_reply`` bytes."""
    if _ESCAPE_MAX * (len(key) + len(value)) + _FRAME_SLACK <= max_reply:
        return  # cannot be too large, whatever the characters: skip the encoding
    try:
        encode(CasReply(INT64_MAX, True, INT64_MAX, value), max_reply)
        encode(WatchEvent(INT64_MAX, key, value, INT64_MAX, EventKind.PUT), max_reply)
    except FrameTooLargeError as exc:
        raise StoreRequestError(ErrorCode.TOO_LARGE, f"put refused, not applied: {exc}") from None
