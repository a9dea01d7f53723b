"""The pure codec: round trips, incremental decoding, and everything it must refuse."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rallypoint.store import wire
from rallypoint.store._errors import ErrorCode, FrameTooLargeError, StoreProtocolError
from rallypoint.store.wire import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    AddReply,
    AddRequest,
    CasReply,
    Challenge,
    DeleteRequest,
    ErrorReply,
    EventKind,
    FrameDecoder,
    GetReply,
    GetRequest,
    Hello,
    KeyValue,
    LeaseGrantReply,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    OkReply,
    ProtocolError,
    PutRequest,
    RangeReply,
    RangeRequest,
    Refused,
    UnwatchRequest,
    WatchEvent,
    WatchReply,
    WatchRequest,
    Welcome,
    encode,
)

SAMPLES: list[wire.Message] = [
    Challenge("ab" * 16, 1),
    Hello("run-1", "f" * 64),
    Hello("run-1", ""),
    Welcome(),
    Refused("wrong secret"),
    GetRequest(1, "k"),
    RangeRequest(2, "nodes/"),
    PutRequest(3, "k", "v", None, None),
    PutRequest(4, "k", "", 0, 17),
    DeleteRequest(5, "k", None),
    DeleteRequest(6, "k", 12),
    AddRequest(7, "counter", -3),
    WatchRequest(8, "", None),
    WatchRequest(9, "nodes/", 41),
    UnwatchRequest(10, 2),
    LeaseGrantRequest(11, 2.5),
    LeaseKeepAliveRequest(12, 5),
    LeaseRevokeRequest(13, 5),
    GetReply(1, "v", 4),
    GetReply(1, None, 0),
    RangeReply(2, (KeyValue("a", "1", 1), KeyValue("b", "é☃", 2)), 9),
    RangeReply(2, (), 0),
    CasReply(3, True, 5, "v"),
    CasReply(4, False, 0, None),
    AddReply(7, 42, 8),
    WatchReply(8, 3),
    LeaseGrantReply(11, 5, 2.5),
    OkReply(12),
    ErrorReply(13, ErrorCode.LEASE_NOT_FOUND, "lease 5 does not exist"),
    WatchEvent(3, "nodes/a", "x", 10, EventKind.PUT),
    WatchEvent(3, "nodes/a", None, 11, EventKind.DELETE),
]


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in SAMPLES} == CLIENT_MESSAGES | SERVER_MESSAGES
    assert not CLIENT_MESSAGES & SERVER_MESSAGES


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: wire.Message) -> None:
    data = encode(msg)
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4
    assert json.loads(data[4:])["type"]
    assert FrameDecoder().feed(data) == [msg]


def test_stream_fed_byte_by_byte() -> None:
    stream = b"".join(encode(m) for m in SAMPLES)
    decoder = FrameDecoder()
    out: list[wire.Message] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == SAMPLES
    assert decoder.buffered == 0


def test_many_frames_in_one_feed() -> None:
    assert FrameDecoder().feed(b"".join(encode(m) for m in SAMPLES)) == SAMPLES


def test_partial_frame_waits_for_the_rest() -> None:
    data = encode(GetRequest(1, "key"))
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.feed(data[-1:]) == [GetRequest(1, "key")]


def test_oversized_prefix_rejected_before_body() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(struct.pack(">I", 100)[:3]) == []
    with pytest.raises(FrameTooLargeError, match="exceeds"):
        decoder.feed(struct.pack(">I", 101)[3:])  # only the header has arrived
    assert decoder.buffered == 0


def test_huge_prefix_rejected_with_default_limit() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(b"\xff\xff\xff\xff")


def test_frame_exactly_at_limit_accepted() -> None:
    data = encode(GetRequest(1, "k"))
    assert FrameDecoder(max_frame=len(data) - 4).feed(data) == [GetRequest(1, "k")]


def test_encode_refuses_oversized_message() -> None:
    with pytest.raises(FrameTooLargeError):
        encode(PutRequest(1, "k", "x" * 200, None, None), max_frame=100)


def test_protocol_error_is_a_store_error() -> None:
    assert ProtocolError is StoreProtocolError


GARBAGE = {
    "not-utf8": b"\xff\xfe\x00",
    "not-json": b"hello there",
    "empty": b"",
    "nan": b'{"type":"lease_grant","id":1,"ttl":NaN}',
    "array": b"[1,2,3]",
    "string": b'"get"',
    "no-type": b'{"id":1,"key":"k"}',
    "type-not-str": b'{"type":5}',
    "unknown-type": b'{"type":"drop_tables","id":1}',
    "missing-field": b'{"type":"get","id":1}',
    "extra-field": b'{"type":"get","id":1,"key":"k","admin":true}',
    "id-as-str": b'{"type":"get","id":"1","key":"k"}',
    "id-as-bool": b'{"type":"get","id":true,"key":"k"}',
    "id-as-float": b'{"type":"get","id":1.0,"key":"k"}',
    "key-as-int": b'{"type":"get","id":1,"key":7}',
    "bad-kind": b'{"type":"event","watch_id":1,"key":"k","value":null,"revision":1,"kind":"x"}',
    "bad-code": b'{"type":"error","id":1,"code":"nope","message":"m"}',
    "bad-entry": b'{"type":"range_reply","id":1,"entries":[["a","b"]],"revision":1}',
    "entries-not-list": b'{"type":"range_reply","id":1,"entries":{},"revision":1}',
    "ok-as-int": b'{"type":"cas_reply","id":1,"ok":1,"revision":1,"value":null}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "huge-int": b'{"type":"get","id":' + b"9" * 5000 + b',"key":"k"}',
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(frame(body))


def test_direction_enforced() -> None:
    server_side = FrameDecoder(accept=CLIENT_MESSAGES)
    with pytest.raises(ProtocolError, match="unexpected message type"):
        server_side.feed(encode(Welcome()))


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"junk"))
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(encode(GetRequest(1, "k")))


texts = st.text(max_size=40)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
opt_ints = st.none() | st.integers(min_value=0, max_value=2**40)
messages = st.one_of(
    st.builds(PutRequest, ints, texts, texts, opt_ints, opt_ints),
    st.builds(WatchEvent, ints, texts, st.none() | texts, ints, st.sampled_from(EventKind)),
    st.builds(RangeReply, ints, st.tuples(st.builds(KeyValue, texts, texts, ints)), ints),
    st.builds(LeaseGrantRequest, ints, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(ErrorReply, ints, st.sampled_from(ErrorCode), texts),
)


@settings(deadline=None, max_examples=100)
@given(st.lists(messages, max_size=5), st.integers(min_value=1, max_value=50))
def test_round_trip_any_split(msgs: list[wire.Message], chunk: int) -> None:
    stream = b"".join(encode(m) for m in msgs)
    decoder = FrameDecoder()
    out: list[wire.Message] = []
    for i in range(0, len(stream), chunk):
        out.extend(decoder.feed(stream[i : i + chunk]))
    assert out == msgs
