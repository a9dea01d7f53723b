"""Maps each request to a call on ``StoreState`` and the reply it produces (pure)."""

from __future__ import annotations

from rallypoint.store.state import StoreState
from rallypoint.store.wire import (
    AddReply,
    AddRequest,
    CasReply,
    DeleteRequest,
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
    WatchReply,
    WatchRequest,
)


def handle(state: StoreState, owner: int, request: Request, now: float) -> Message:
    """Apply one request to the state and build its reply.

    Args:
        state: the store's state.
        owner: the session the request came from (owns leases and watches it creates).
        request: the request.
        now: the current monotonic time.

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
            entries, revision = state.range(prefix)
            return RangeReply(rid, entries, revision)
        case PutRequest(key=key, value=value, expected_revision=expected, lease=lease):
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
            state.revoke(lease)
    return OkReply(rid)
