"""The store's bounds in its pure parts: decode budget, quota, 64-bit counters, leases."""

from __future__ import annotations

import itertools
import json
import logging
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fakes import FakeClock

from rallypoint.store import ErrorCode, LeaseNotFoundError, StoreRequestError
from rallypoint.store._admission import Admission, AdmissionLimits, RefusalLog
from rallypoint.store._budget import REQUEST_BUDGET, SMALL_FRAME, DecodeBudget, over_budget
from rallypoint.store._handlers import handle
from rallypoint.store._watchindex import WatchIndex
from rallypoint.store.secret import check_proof
from rallypoint.store.state import Quota, StoreState
from rallypoint.store.wire import (
    CLIENT_MESSAGES,
    INT64_MAX,
    AddRequest,
    FrameDecoder,
    GetRequest,
    ProtocolError,
    PutRequest,
    encode,
)

A, B = 1, 2
MIB = 1 << 20


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def server_decoder() -> FrameDecoder:
    return FrameDecoder(16 * MIB, CLIENT_MESSAGES, REQUEST_BUDGET)


# --- decode budget -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" + b"{}," * (5 * MIB) + b"{}]", id="16MiB-of-empty-objects"),
        pytest.param(b"[" + b"[]," * (5 * MIB) + b"[]]", id="16MiB-of-empty-lists"),
        pytest.param(b'{"a":' * 2000 + b"0" + b"}" * 2000, id="deep-objects"),
    ],
)
def test_a_frame_over_budget_is_refused_before_it_is_decoded(body: bytes) -> None:
    decoder = server_decoder()
    decoder.receive(frame(body))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=r"elements|nested"):
            decoder.next_message()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak while refusing a {len(body)}-byte frame: {peak / MIB:.1f} MiB")
    assert peak < 3 * len(body) + MIB  # copies of the bytes, never ~400 MiB of objects


def test_a_failed_frame_keeps_no_exception_holding_its_data() -> None:
    decoder = server_decoder()
    with pytest.raises(ProtocolError) as info:
        decoder.feed(frame(b'{"type":"get","id":1,"key":"' + b"x" * 10_000 + b"]"))
    assert info.value.__context__ is None  # no JSONDecodeError (whose .doc is the frame)
    assert info.value.__cause__ is None
    assert isinstance(decoder._failure, str)


def test_strings_do_not_count_against_the_budget() -> None:
    value = json.dumps({"nested": [[{"a": [1, 2, 3]}] * 500]})  # JSON inside a string value
    msg = PutRequest(1, "k", value, None, None)
    assert server_decoder().feed(encode(msg)) == [msg]


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c), max_leaves=60))
def test_budget_counts_match_the_json(value: object) -> None:
    body = json.dumps({"v": value, "pad": "x" * SMALL_FRAME}).encode()
    depth, elements = _shape(value)
    budget = DecodeBudget(max_elements=10_000, max_depth=depth + 1)
    assert over_budget(body, budget) is None
    if depth > 0:
        assert over_budget(body, DecodeBudget(10_000, depth)) is not None
    assert over_budget(body, DecodeBudget(elements, 100)) is not None


def _shape(value: object) -> tuple[int, int]:
    """(nesting depth, elements counted) of a JSON value; the dict around it adds 1 and 3."""
    if not isinstance(value, list):
        return 0, 0
    inner = [_shape(v) for v in value]
    depth = 1 + max((d for d, _ in inner), default=0)
    return depth, 1 + max(len(value) - 1, 0) + sum(e for _, e in inner)


# --- state quota and edges -----------------------------------------------------------------


def test_a_put_beyond_the_data_quota_is_refused_and_not_applied() -> None:
    s = StoreState(Quota(max_data_bytes=MIB))
    s.put("k", "x" * 500_000, None, None)
    with pytest.raises(StoreRequestError) as info:
        s.put("other", "y" * 600_000, None, None)
    assert info.value.code is ErrorCode.NO_SPACE
    assert s.get("other") is None
    s.put("k", "z" * 900_000, None, None)  # replacing a value counts only the difference
    assert s.data_bytes <= MIB


def test_history_is_bounded_in_bytes() -> None:
    s = StoreState(Quota(max_history_bytes=8 * MIB))
    for _ in range(300):
        s.put("k", "v" * MIB, None, None)
    assert s.history_bytes <= 8 * MIB
    assert s.data_bytes < 2 * MIB


@pytest.mark.parametrize(
    ("start", "amount"),
    [(str(INT64_MAX), 1), (str(-INT64_MAX - 1), -1), ("9" * 4300, 1), ("9" * 20, 0)],
    ids=["overflow", "underflow", "4300-digits", "20-digits"],
)
def test_add_is_bounded_to_signed_64_bits(start: str, amount: int) -> None:
    s = StoreState()
    s.put("n", start, None, None)
    with pytest.raises(StoreRequestError):
        s.add("n", amount)
    assert s.get("n") is not None
    assert s.get("n").value == start  # type: ignore[union-attr]


def test_only_the_owner_revokes_a_lease() -> None:
    s = StoreState()
    lease = s.grant(A, 60.0, now=0.0)
    s.put("k", "v", None, lease)
    with pytest.raises(LeaseNotFoundError):
        s.revoke(B, lease)
    assert s.get("k") is not None
    s.revoke(A, lease)
    assert s.get("k") is None


def test_lease_ids_are_not_guessable() -> None:
    s = StoreState(Quota(max_leases_per_owner=100))
    ids = [s.grant(A, 60.0, now=0.0) for _ in range(100)]
    assert len(set(ids)) == 100
    assert sum(1 for a, b in itertools.pairwise(ids) if abs(a - b) < 1000) == 0
    assert all(0 < i <= INT64_MAX for i in ids)


def test_per_owner_quota_of_watches_and_leases() -> None:
    s = StoreState(Quota(max_watches_per_owner=2, max_leases_per_owner=1))
    s.watch(A, "a", None)
    s.watch(A, "b", None)
    with pytest.raises(StoreRequestError, match="quota"):
        s.watch(A, "c", None)
    s.watch(B, "c", None)  # another owner has its own quota
    s.grant(A, 1.0, 0.0)
    with pytest.raises(StoreRequestError, match="quota"):
        s.grant(A, 1.0, 0.0)


def test_expire_spares_backlogged_owners() -> None:
    s = StoreState()
    busy, idle = s.grant(A, 1.0, 0.0), s.grant(B, 1.0, 0.0)
    assert s.expire(5.0, spared={A}) == [idle]
    assert s.next_deadline() == 1.0  # still due, for a later call
    s.keepalive(busy, 5.0)  # the keep-alive that was waiting in A's input
    assert s.expire(5.5) == []


def test_range_too_large_is_found_while_collecting() -> None:
    s = StoreState()
    for i in range(100):
        s.put(f"k{i:03}", "x" * 100, None, None)
    with pytest.raises(StoreRequestError) as info:
        s.range("k", max_bytes=5000)
    assert info.value.code is ErrorCode.TOO_LARGE


# --- handlers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["x", "\u00e9", "\U0001f600"], ids=["ascii", "latin", "emoji"])
def test_a_put_whose_reply_would_not_fit_is_not_applied(char: str) -> None:
    s = StoreState()
    value = char * 900
    with pytest.raises(StoreRequestError) as info:
        handle(s, A, PutRequest(1, "k", value, None, None), 0.0, max_reply=len(value) + 10)
    assert info.value.code is ErrorCode.TOO_LARGE
    assert s.get("k") is None
    assert s.revision == 0


def test_add_amount_and_total_stay_64_bit() -> None:
    s = StoreState()
    handle(s, A, AddRequest(1, "n", INT64_MAX), 0.0, 1 << 20)
    with pytest.raises(StoreRequestError, match="overflows"):
        handle(s, A, AddRequest(2, "n", 1), 0.0, 1 << 20)
    assert handle(s, A, GetRequest(3, "n"), 0.0, 1 << 20).value == str(INT64_MAX)  # type: ignore[union-attr]


@pytest.mark.parametrize("proof", ["\ud800", "\udfff" * 64, "é" * 64, "0" * 10_000])
def test_odd_proofs_are_a_wrong_secret(proof: str) -> None:
    assert check_proof(b"s", "00" * 16, "run", proof) == "wrong secret"


# --- watch index ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.text("ab/", max_size=4), st.booleans()), max_size=30),
    st.lists(st.text("ab/", max_size=5), max_size=10),
)
def test_watch_index_matches_exactly_the_prefixes(
    ops: list[tuple[str, bool]], keys: list[str]
) -> None:
    index, live = WatchIndex(), dict[int, str]()
    for i, (prefix, remove) in enumerate(ops):
        if remove and live:
            victim = min(live)
            index.remove(victim)
            del live[victim]
        else:
            index.add(i, i % 3, prefix)
            live[i] = prefix
    for key in keys:
        got = sorted(w for w, _ in index.matching(key))
        assert got == sorted(w for w, p in live.items() if key.startswith(p))


# --- admission ------------------------------------------------------------------------------


class FakeConn:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def test_refusals_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(start=0.0)
    log = RefusalLog(clock, interval=10.0)
    with caplog.at_level(logging.WARNING, logger="rallypoint.store._admission"):
        for i in range(1000):
            log.refused(f"peer{i}", "wrong secret")
            clock.advance(0.01)
        clock.advance(0.5)
        log.refused("late", "wrong secret")
    assert [r.getMessage() for r in caplog.records] == [
        "store refused peer0: wrong secret",
        "store refused late: wrong secret (and 999 more peers in the last 10 s)",
    ]


def test_admission_evicts_the_oldest_handshake_and_caps_sockets() -> None:
    admission = Admission(
        AdmissionLimits(max_connections=3, max_handshakes=2), RefusalLog(FakeClock())
    )
    a, b, c, d = (FakeConn(p) for p in "abcd")
    assert admission.admit(a)
    assert admission.admit(b)
    assert admission.admit(c)  # a, the oldest handshake, makes room
    assert (a.aborted, b.aborted) == (True, False)
    admission.handshake_over(b)  # b authenticated: no longer evictable
    assert not admission.admit(d)  # 3 sockets open: the limit
    admission.closed(a)
    assert admission.admit(d)
    assert admission.handshaking == 2  # c and d
