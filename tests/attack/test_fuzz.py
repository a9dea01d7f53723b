"""Hypothesis fuzzing of what a peer controls: the frames a server decodes, the requests
its handlers apply. Nothing but ``ProtocolError`` (close) or ``StoreRequestError`` (an
``error`` reply) may come out, and the state stays consistent."""

from __future__ import annotations

import contextlib
import json
import struct
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rallypoint.store import StoreRequestError
from rallypoint.store._handlers import handle
from rallypoint.store.state import Quota, StoreState
from rallypoint.store.wire import (
    CLIENT_MESSAGES,
    INT64_MAX,
    INT64_MIN,
    REQUEST_BUDGET,
    AddRequest,
    DeleteRequest,
    FrameDecoder,
    GetRequest,
    Hello,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    ProtocolError,
    PutRequest,
    RangeRequest,
    UnwatchRequest,
    WatchRequest,
    encode,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAGS = [
    "hello",
    "get",
    "range",
    "put",
    "delete",
    "add",
    "watch",
    "unwatch",
    "lease_grant",
    "lease_keepalive",
    "lease_revoke",
    "welcome",
    "event",
    "x",
]
FIELDS = [
    "type",
    "id",
    "key",
    "value",
    "prefix",
    "expected_revision",
    "lease",
    "amount",
    "start_revision",
    "watch_id",
    "ttl",
    "run_id",
    "proof",
    "extra",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
frames_json = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8).map(
    lambda d: {**d, "type": d["type"]} if "type" in d else d
)
texts = st.text(max_size=30)  # includes lone surrogates
int64 = st.integers(INT64_MIN, INT64_MAX)
opt_int64 = st.none() | int64
requests = st.one_of(
    st.builds(GetRequest, int64, texts),
    st.builds(RangeRequest, int64, texts),
    st.builds(PutRequest, int64, texts, texts, opt_int64, opt_int64),
    st.builds(DeleteRequest, int64, texts, opt_int64),
    st.builds(AddRequest, int64, st.sampled_from(["n", "max", "word", "big"]) | texts, int64),
    st.builds(WatchRequest, int64, texts, opt_int64),
    st.builds(UnwatchRequest, int64, int64),
    st.builds(LeaseGrantRequest, int64, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(LeaseKeepAliveRequest, int64, int64 | st.just(1)),
    st.builds(LeaseRevokeRequest, int64, int64 | st.just(1)),
)


def decode_all(stream: bytes, chunk: int) -> None:
    decoder = FrameDecoder(1 << 16, CLIENT_MESSAGES, REQUEST_BUDGET)
    try:
        for i in range(0, len(stream), chunk):
            decoder.feed(stream[i : i + chunk])
    except ProtocolError:
        pass  # the server closes the connection: the only other allowed outcome


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 64))
def test_random_bytes(stream: bytes, chunk: int) -> None:
    decode_all(stream, chunk)


@FUZZ
@given(st.lists(frames_json, max_size=4), st.integers(1, 64), st.booleans())
def test_json_shaped_frames(
    objects: list[dict[str, object]], chunk: int, prefix_lies: bool
) -> None:
    bodies = [json.dumps(o).encode() for o in objects]
    stream = b"".join(struct.pack(">I", len(b) + (3 if prefix_lies else 0)) + b for b in bodies)
    decode_all(stream, chunk)


@FUZZ
@given(requests, st.integers(0, 200), st.binary(min_size=1, max_size=3), st.integers(1, 16))
def test_mutated_valid_frames(msg: object, at: int, junk: bytes, chunk: int) -> None:
    good = encode(Hello("run", "00" * 32)) + encode(msg)  # type: ignore[arg-type]
    at %= len(good)
    decode_all(good[:at] + junk + good[at + len(junk) :], chunk)


def populated() -> StoreState:
    state = StoreState(
        Quota(max_data_bytes=1 << 16, max_watches_per_owner=5, max_leases_per_owner=3)
    )
    state.put("n", "1", None, None)
    state.put("max", str(INT64_MAX), None, None)
    state.put("word", "abc", None, None)
    state.put("big", "9" * 4301, None, None)  # one digit past int()'s limit
    return state


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([1, 2]), requests), max_size=25))
def test_handlers_answer_every_request(script: list[tuple[int, object]]) -> None:
    state = populated()
    last = state.revision
    for step, (owner, request) in enumerate(script):
        with contextlib.suppress(StoreRequestError):  # an ``error`` reply
            handle(state, owner, request, float(step), max_reply=4096)  # type: ignore[arg-type]
        assert state.revision >= last
        last = state.revision
        entries, _ = state.range("")
        held = sum(sys.getsizeof(e.key) + sys.getsizeof(e.value) + 200 for e in entries)
        assert state.data_bytes == held <= 1 << 16
    state.expire(1e9)
    state.drop_owner(1)
    state.drop_owner(2)
    assert state.next_deadline() is None
