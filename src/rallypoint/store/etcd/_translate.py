"""The etcd gateway's error answers, classified and translated into the store's exceptions.

Design note
-----------
The gateway reports a refused request as an HTTP status plus a gRPC code and message,
either as the whole body of an error reply or as the ``error`` member of a stream message;
``gateway_error`` reads either form. ``classify`` sorts an answer into a ``Refusal`` by its
gRPC **code** first (the table ``_BY_CODE``). etcd reuses some codes for unrelated errors
(``InvalidArgument`` also means "wrong password", ``FailedPrecondition`` also "lease already
exists", ``OutOfRange`` also "compacted"), so within a code a few message fragments pick
the member of that family (``_REFINE``); message text alone decides only when the code is
missing or says nothing (0, ``Unknown``), as from an older or foreign gateway.
``translate`` maps a refusal, once, onto the store's exceptions, naming the endpoint;
``may_retry`` says which refusals the failover loop may send again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from rallypoint.store._errors import (
    ErrorCode,
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreAuthError,
    StoreConnectionError,
    StoreError,
    StoreProtocolError,
    StoreRequestError,
)

from ._http import Endpoint


class Refusal(enum.Enum):
    """What an error answer of etcd means for the store."""

    LEASE_NOT_FOUND = enum.auto()
    LEASE_EXISTS = enum.auto()  # a grant with our chosen ID was already applied
    COMPACTED = enum.auto()
    AUTH = enum.auto()  # wrong user or password, or not allowed
    STALE_TOKEN = enum.auto()  # the auth token expired: fetch a new one
    NOT_APPLIED = enum.auto()  # unavailable, and the request surely was not applied
    OUTCOME_UNKNOWN = enum.auto()  # unavailable, and the request may have been applied
    NO_GATEWAY = enum.auto()  # nothing serves the v3 JSON gateway at that path
    INVALID = enum.auto()  # etcd rejected the request itself


# gRPC status codes (google.golang.org/grpc/codes) the gateway reports.
_UNKNOWN, _INVALID_ARGUMENT, _DEADLINE_EXCEEDED, _NOT_FOUND = 2, 3, 4, 5
_PERMISSION_DENIED, _RESOURCE_EXHAUSTED, _FAILED_PRECONDITION = 7, 8, 9
_OUT_OF_RANGE, _UNIMPLEMENTED, _UNAVAILABLE, _UNAUTHENTICATED = 11, 12, 14, 16

_BY_CODE: dict[int, Refusal] = {
    1: Refusal.OUTCOME_UNKNOWN,  # Canceled: the gateway gave up on a request it had sent
    _INVALID_ARGUMENT: Refusal.INVALID,
    _DEADLINE_EXCEEDED: Refusal.OUTCOME_UNKNOWN,
    _NOT_FOUND: Refusal.LEASE_NOT_FOUND,  # the only NotFound of the calls made here
    _PERMISSION_DENIED: Refusal.AUTH,
    _RESOURCE_EXHAUSTED: Refusal.INVALID,  # "database space exceeded": an operator's alarm
    _FAILED_PRECONDITION: Refusal.INVALID,
    _OUT_OF_RANGE: Refusal.INVALID,
    _UNIMPLEMENTED: Refusal.NO_GATEWAY,
    _UNAVAILABLE: Refusal.OUTCOME_UNKNOWN,  # "leader changed", "request timed out", ...
    _UNAUTHENTICATED: Refusal.STALE_TOKEN,
}

# Within one code, the message fragments (lower case) that name another member of the
# family; the first match wins. These are etcd's own messages (api/v3rpc/rpctypes).
_REFINE: dict[int, tuple[tuple[str, Refusal], ...]] = {
    _INVALID_ARGUMENT: (
        ("authentication failed", Refusal.AUTH),
        ("user name is empty", Refusal.AUTH),
        ("auth store is old", Refusal.STALE_TOKEN),
    ),
    _FAILED_PRECONDITION: (
        ("lease already exists", Refusal.LEASE_EXISTS),
        ("not leader", Refusal.NOT_APPLIED),
        ("user name not found", Refusal.AUTH),
        ("not granted", Refusal.AUTH),
        ("authentication is not enabled", Refusal.AUTH),
        ("root user", Refusal.AUTH),
    ),
    _OUT_OF_RANGE: (("compacted", Refusal.COMPACTED),),
    _RESOURCE_EXHAUSTED: (("too many requests", Refusal.NOT_APPLIED),),
    _UNAVAILABLE: (
        ("no leader", Refusal.NOT_APPLIED),
        ("not capable", Refusal.NOT_APPLIED),
        ("server stopped", Refusal.NOT_APPLIED),
        ("unhealthy cluster", Refusal.NOT_APPLIED),
        ("not supported for learner", Refusal.NOT_APPLIED),
    ),
}

# With no usable code: the message alone, as the last resort.
_BY_TEXT: tuple[tuple[str, Refusal], ...] = (
    ("lease not found", Refusal.LEASE_NOT_FOUND),
    ("lease already exists", Refusal.LEASE_EXISTS),
    ("compacted", Refusal.COMPACTED),
    ("invalid auth token", Refusal.STALE_TOKEN),
    ("permission denied", Refusal.AUTH),
    ("authentication", Refusal.AUTH),
    ("user name", Refusal.AUTH),
    ("password", Refusal.AUTH),
    ("no leader", Refusal.NOT_APPLIED),
    ("too many requests", Refusal.NOT_APPLIED),
)


class GatewayError(Exception):
    """An error answer of the gateway (HTTP status, gRPC code and message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LeaseExistsError(StoreRequestError):
    """etcd already holds a lease with the ID a grant asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_ARGUMENT, message)


class EtcdOutcomeUnknownError(StoreConnectionError):
    """A write that is not safe to send twice may or may not have been applied.

    Its reply was lost after it was sent, or etcd answered "request timed out" / "leader
    changed". The store did not send it again.
    """


def gateway_error(status: int, body: dict[str, Any]) -> GatewayError:
    """The error an HTTP error reply (or an ``error`` member of a stream) describes."""
    err = body.get("error", body)
    if isinstance(err, dict):
        message = str(err.get("message") or err.get("error") or err)
        code = err.get("code", err.get("grpc_code", 0))
    else:
        message = str(body.get("message") or err)
        code = body.get("code", 0)
    return GatewayError(status, code if isinstance(code, int) else 0, message)


def classify(error: GatewayError) -> Refusal:
    """What an error answer means: by its gRPC code, refined by message within a code."""
    text = error.message.lower()
    family = _BY_CODE.get(error.code)
    if family is None or error.code == _UNKNOWN:
        return _by_text(error, text)
    return next((r for s, r in _REFINE.get(error.code, ()) if s in text), family)


def _by_text(error: GatewayError, text: str) -> Refusal:
    """The message decides (no gRPC code, or ``Unknown``)."""
    found = next((r for s, r in _BY_TEXT if s in text), None)
    if found is not None:
        return found
    if error.status == 404 and error.code == 0:
        return Refusal.NO_GATEWAY
    return Refusal.INVALID


def may_retry(refusal: Refusal, replay_safe: bool) -> bool:
    """Whether etcd was unavailable in a way that lets the request go again elsewhere."""
    return refusal is Refusal.NOT_APPLIED or (replay_safe and refusal is Refusal.OUTCOME_UNKNOWN)


def translate(error: GatewayError, endpoint: Endpoint, what: str) -> StoreError:
    """The store exception for an error answer of etcd."""
    refusal = classify(error)
    if refusal is Refusal.NO_GATEWAY:
        return StoreProtocolError(
            f"{endpoint} has no etcd v3 JSON gateway at the path of {what} "
            f"(HTTP {error.status}: {error.message[:80]})"
        )
    return _EXCEPTION[refusal](f"etcd at {endpoint} refused {what}: {error.message}")


def _invalid(message: str) -> StoreError:
    return StoreRequestError(ErrorCode.INVALID_ARGUMENT, message)


def _outcome_unknown(message: str) -> StoreError:
    return EtcdOutcomeUnknownError(f"{message}; its outcome is unknown")


_EXCEPTION: dict[Refusal, Callable[[str], StoreError]] = {
    Refusal.LEASE_NOT_FOUND: LeaseNotFoundError,
    Refusal.LEASE_EXISTS: LeaseExistsError,
    Refusal.COMPACTED: RevisionCompactedError,
    Refusal.AUTH: StoreAuthError,
    Refusal.STALE_TOKEN: StoreAuthError,
    Refusal.NOT_APPLIED: StoreConnectionError,
    Refusal.OUTCOME_UNKNOWN: _outcome_unknown,
    Refusal.INVALID: _invalid,
}
