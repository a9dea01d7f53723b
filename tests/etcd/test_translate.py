"""etcd's error answers are classified by gRPC code first, by message only as a fallback."""

from __future__ import annotations

import pytest

from rallypoint.store import (
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreAuthError,
    StoreConnectionError,
    StoreError,
    StoreProtocolError,
    StoreRequestError,
)
from rallypoint.store.etcd import Endpoint, EtcdOutcomeUnknownError
from rallypoint.store.etcd._translate import (
    GatewayError,
    LeaseExistsError,
    Refusal,
    classify,
    gateway_error,
    may_retry,
    translate,
)

# (gRPC code, etcd's message) as etcd 3.4-3.6 send them (api/v3rpc/rpctypes), and the meaning.
ETCD_ERRORS = [
    (5, "etcdserver: requested lease not found", Refusal.LEASE_NOT_FOUND),
    (9, "etcdserver: lease already exists", Refusal.LEASE_EXISTS),
    (11, "etcdserver: mvcc: required revision has been compacted", Refusal.COMPACTED),
    (11, "etcdserver: mvcc: required revision is a future revision", Refusal.INVALID),
    (11, "etcdserver: too large lease TTL", Refusal.INVALID),
    (3, "etcdserver: authentication failed, invalid user ID or password", Refusal.AUTH),
    (3, "etcdserver: user name is empty", Refusal.AUTH),
    (3, "etcdserver: revision of auth store is old", Refusal.STALE_TOKEN),
    (3, "etcdserver: key is not provided", Refusal.INVALID),
    (3, "etcdserver: duplicate key given in txn request", Refusal.INVALID),
    (3, "etcdserver: request is too large", Refusal.INVALID),
    (7, "etcdserver: permission denied", Refusal.AUTH),
    (9, "etcdserver: user name not found", Refusal.AUTH),
    (9, "etcdserver: role is not granted to the user", Refusal.AUTH),
    (9, "etcdserver: authentication is not enabled", Refusal.AUTH),
    (9, "etcdserver: not leader", Refusal.NOT_APPLIED),
    (16, "etcdserver: invalid auth token", Refusal.STALE_TOKEN),
    (14, "etcdserver: no leader", Refusal.NOT_APPLIED),
    (14, "etcdserver: not capable", Refusal.NOT_APPLIED),
    (14, "etcdserver: server stopped", Refusal.NOT_APPLIED),
    (14, "etcdserver: unhealthy cluster", Refusal.NOT_APPLIED),
    (8, "etcdserver: too many requests", Refusal.NOT_APPLIED),
    (8, "etcdserver: mvcc: database space exceeded", Refusal.INVALID),
    (14, "etcdserver: leader changed", Refusal.OUTCOME_UNKNOWN),
    (14, "etcdserver: request timed out", Refusal.OUTCOME_UNKNOWN),
    (14, "etcdserver: request timed out, possibly due to connection lost", Refusal.OUTCOME_UNKNOWN),
    (14, "transport is closing", Refusal.OUTCOME_UNKNOWN),  # an unlisted Unavailable
    (4, "context deadline exceeded", Refusal.OUTCOME_UNKNOWN),
    (1, "context canceled", Refusal.OUTCOME_UNKNOWN),
    (12, "unknown service etcdserverpb.KV", Refusal.NO_GATEWAY),
]  # fmt: skip


@pytest.mark.parametrize(("code", "message", "refusal"), ETCD_ERRORS)
def test_etcd_errors_are_classified_by_code(code: int, message: str, refusal: Refusal) -> None:
    assert classify(GatewayError(400, code, message)) is refusal


@pytest.mark.parametrize(
    ("code", "message", "refusal"),
    [
        (5, "something else entirely", Refusal.LEASE_NOT_FOUND),
        (3, "lease not found", Refusal.INVALID),  # the text of another family does not count
        (14, "permission denied", Refusal.OUTCOME_UNKNOWN),
        (16, "no leader", Refusal.STALE_TOKEN),
        (7, "compacted", Refusal.AUTH),
        (9, "compacted", Refusal.INVALID),
    ],
)
def test_the_code_beats_the_message(code: int, message: str, refusal: Refusal) -> None:
    assert classify(GatewayError(400, code, message)) is refusal


@pytest.mark.parametrize(
    ("code", "message", "refusal"),
    [
        (0, "etcdserver: requested lease not found", Refusal.LEASE_NOT_FOUND),
        (0, "etcdserver: lease already exists", Refusal.LEASE_EXISTS),
        (0, "mvcc: required revision has been compacted", Refusal.COMPACTED),
        (0, "etcdserver: invalid auth token", Refusal.STALE_TOKEN),
        (2, "etcdserver: authentication failed, invalid user ID or password", Refusal.AUTH),
        (0, "etcdserver: no leader", Refusal.NOT_APPLIED),
        (0, "etcdserver: request timed out", Refusal.INVALID),  # unknown outcome needs code 14
        (0, "bad request", Refusal.INVALID),
        (99, "etcdserver: requested lease not found", Refusal.LEASE_NOT_FOUND),
    ],
)
def test_without_a_usable_code_the_message_decides(
    code: int, message: str, refusal: Refusal
) -> None:
    assert classify(GatewayError(400, code, message)) is refusal


def test_a_plain_404_means_no_gateway_there() -> None:
    assert classify(GatewayError(404, 0, "404 page not found")) is Refusal.NO_GATEWAY
    assert classify(GatewayError(404, 5, "etcdserver: requested lease not found")) is (
        Refusal.LEASE_NOT_FOUND
    )


_SENT_AGAIN = (Refusal.NOT_APPLIED, Refusal.OUTCOME_UNKNOWN)


@pytest.mark.parametrize(
    ("refusal", "replay_safe", "retry"),
    [
        (Refusal.NOT_APPLIED, False, True),
        (Refusal.NOT_APPLIED, True, True),
        (Refusal.OUTCOME_UNKNOWN, True, True),
        (Refusal.OUTCOME_UNKNOWN, False, False),  # a write that may have landed: not again
        *((r, s, False) for r in Refusal for s in (False, True) if r not in _SENT_AGAIN),
    ],
)
def test_which_refusals_are_sent_again(refusal: Refusal, replay_safe: bool, retry: bool) -> None:
    assert may_retry(refusal, replay_safe) is retry


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (5, "etcdserver: requested lease not found", LeaseNotFoundError),
        (9, "etcdserver: lease already exists", LeaseExistsError),
        (11, "etcdserver: mvcc: required revision has been compacted", RevisionCompactedError),
        (3, "etcdserver: authentication failed, invalid user ID or password", StoreAuthError),
        (16, "etcdserver: invalid auth token", StoreAuthError),
        (14, "etcdserver: request timed out", EtcdOutcomeUnknownError),
        (14, "etcdserver: no leader", StoreConnectionError),
        (3, "etcdserver: key is not provided", StoreRequestError),
        (12, "unknown service", StoreProtocolError),
    ],
)
def test_each_refusal_raises_its_store_error(
    code: int, message: str, kind: type[StoreError]
) -> None:
    error = translate(GatewayError(400, code, message), Endpoint("10.0.0.1", 2379), "put 'k'")
    assert type(error) is kind
    assert "10.0.0.1:2379" in str(error)


def test_outcome_unknown_is_a_connection_error() -> None:
    # Callers that handle a lost store keep working: it is a StoreConnectionError.
    assert issubclass(EtcdOutcomeUnknownError, StoreConnectionError)


@pytest.mark.parametrize(
    "body",
    [
        {"error": "etcdserver: no leader", "code": 14, "message": "etcdserver: no leader"},
        {"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"}},
        {"error": {"code": 14, "message": "etcdserver: no leader"}},
    ],
)
def test_both_error_shapes_of_the_gateway_are_read(body: dict[str, object]) -> None:
    error = gateway_error(503, body)
    assert (error.code, error.message) == (14, "etcdserver: no leader")
    assert classify(error) is Refusal.NOT_APPLIED


def test_a_code_that_is_not_a_number_counts_as_missing() -> None:
    error = gateway_error(400, {"code": "14", "message": "etcdserver: requested lease not found"})
    assert error.code == 0
    assert classify(error) is Refusal.LEASE_NOT_FOUND
