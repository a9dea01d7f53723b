"""The etcd gateway's error answers, read and translated into the store's exception tree.

Design note
-----------
The gateway reports a refused request as an HTTP status plus a gRPC code and message,
either as the whole body of an error reply or as the ``error`` member of a stream
message. ``gateway_error`` reads either form; ``translate`` maps it, once, onto the
store's exceptions, naming the endpoint. ``may_retry`` says which "unavailable" answers
(no leader yet, leader changed, request timed out) the failover loop may send again.
"""

from __future__ import annotations

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

# gRPC status codes the gateway reports in its error bodies.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_PERMISSION_DENIED = 7
_FAILED_PRECONDITION = 9
_OUT_OF_RANGE = 11
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16

# Unavailable answers that guarantee the request was not applied, so even a write may go
# again. Others ("leader changed", "request timed out") leave a write's outcome unknown.
_NOT_APPLIED = ("no leader", "too many requests", "not capable", "stopped")


class GatewayError(Exception):
    """An error answer of the gateway (HTTP status, gRPC code and message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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


def may_retry(error: GatewayError, idempotent: bool) -> bool:
    """Whether etcd was unavailable in a way that lets the request go again elsewhere."""
    text = error.message.lower()
    return error.code == _UNAVAILABLE and (idempotent or any(s in text for s in _NOT_APPLIED))


def is_stale_token(error: GatewayError) -> bool:
    """Whether etcd refused the auth token (a new one may be fetched, once)."""
    return "invalid auth token" in error.message.lower()


def translate(error: GatewayError, endpoint: Endpoint, what: str) -> StoreError:
    """The store exception for an error answer of etcd."""
    msg = f"etcd at {endpoint} refused {what}: {error.message}"
    text = error.message.lower()
    if "lease not found" in text:
        return LeaseNotFoundError(msg)
    if "compacted" in text:
        return RevisionCompactedError(msg)
    if error.code in (_UNAUTHENTICATED, _PERMISSION_DENIED) or any(
        s in text for s in ("auth", "permission denied", "user name", "password")
    ):
        return StoreAuthError(msg)
    if error.code == _UNAVAILABLE:
        return StoreConnectionError(msg)
    if error.code in (_INVALID_ARGUMENT, _FAILED_PRECONDITION, _OUT_OF_RANGE, _NOT_FOUND):
        return StoreRequestError(ErrorCode.INVALID_ARGUMENT, msg)
    if error.status == 404 and error.code == 0:
        return StoreProtocolError(
            f"{endpoint} has no etcd v3 JSON gateway at the path of {what} "
            f"(HTTP 404: {error.message[:80]})"
        )
    return StoreRequestError(ErrorCode.INVALID_ARGUMENT, msg)
