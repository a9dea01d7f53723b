"""torch's TCPStore codec: round trips in any chunking, the bytes torch sends, and limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rallypoint.torchstore import wire
from rallypoint.torchstore.wire import (
    Add,
    Append,
    BytesReply,
    CancelWait,
    Check,
    CheckReply,
    CompareSet,
    DeleteKey,
    Get,
    IntReply,
    KeysReply,
    Limits,
    ListKeys,
    MultiGet,
    MultiSet,
    NumKeys,
    Ping,
    PingReply,
    QueueLen,
    QueuePop,
    QueuePopReply,
    QueuePush,
    RequestDecoder,
    Set,
    TorchProtocolError,
    Validate,
    ValuesReply,
    Wait,
    WaitReply,
    WaitResponse,
    encode_reply,
    encode_request,
)

# Bytes captured from torch 2.13's client (a proxy between it and torch's own server).
CAPTURED = [
    ("00 ce f7 85 3c", Validate(0x3C85F7CE)),
    ("0d a4 37 00 00", Ping(0x37A4)),
    (
        "04 05 00 00 00 00 00 00 00 69 6e 69 74 2f 01 00 00 00 00 00 00 00",
        Add(b"init/", 1),
    ),
    ("01 02 00 00 00 00 00 00 00 2f 6b 02 00 00 00 00 00 00 00 76 31", Set(b"/k", b"v1")),
    ("06 01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 2f 6b", Wait((b"/k",))),
    ("03 02 00 00 00 00 00 00 00 2f 6b", Get(b"/k")),
    ("0c", CancelWait()),
    ("07", NumKeys()),
    ("11", ListKeys()),
    ("10 03 00 00 00 00 00 00 00 2f 71 71", QueueLen(b"/qq")),
    (
        "0b 02 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 2f 70 01 00 00 00 00 00 00 00 31"
        " 02 00 00 00 00 00 00 00 2f 71 01 00 00 00 00 00 00 00 32",
        MultiSet((b"/p", b"/q"), (b"1", b"2")),
    ),
]

_bytes = st.binary(max_size=40)
_keys = st.lists(_bytes, max_size=5).map(tuple)


@st.composite
def _multi_set(draw: st.DrawFn) -> MultiSet:
    keys = draw(_keys)
    return MultiSet(keys, tuple(draw(_bytes) for _ in keys))


REQUESTS = st.one_of(
    st.builds(Validate, st.integers(0, 2**32 - 1)),
    st.builds(Ping, st.integers(0, 2**32 - 1)),
    st.builds(Set, _bytes, _bytes),
    st.builds(CompareSet, _bytes, _bytes, _bytes),
    st.builds(Get, _bytes),
    st.builds(Add, _bytes, st.integers(-(2**63), 2**63 - 1)),
    st.builds(Check, _keys),
    st.builds(Wait, _keys),
    st.just(NumKeys()),
    st.builds(DeleteKey, _bytes),
    st.builds(Append, _bytes, _bytes),
    st.builds(MultiGet, _keys),
    _multi_set(),
    st.just(CancelWait()),
    st.builds(QueuePush, _bytes, _bytes),
    st.builds(QueuePop, _bytes),
    st.builds(QueueLen, _bytes),
    st.just(ListKeys()),
)


@pytest.mark.parametrize(("hex_bytes", "request_"), CAPTURED)
def test_the_bytes_torch_sends_decode_and_encode_back(
    hex_bytes: str, request_: wire.Request
) -> None:
    data = bytes.fromhex(hex_bytes)
    assert RequestDecoder().feed(data) == [request_]
    assert encode_request(request_) == data


def test_every_query_type_has_a_request() -> None:
    seen = {encode_request(r)[0] for r in _one_of_each()}
    assert seen == {int(q) for q in wire.QueryType}


def _one_of_each() -> list[wire.Request]:
    return [
        Validate(1), Ping(2), Set(b"k", b"v"), CompareSet(b"k", b"", b"v"), Get(b"k"),
        Add(b"k", 1), Check((b"k",)), Wait((b"k",)), NumKeys(), DeleteKey(b"k"),
        Append(b"k", b"v"), MultiGet((b"k",)), MultiSet((b"k",), (b"v",)), CancelWait(),
        QueuePush(b"q", b"v"), QueuePop(b"q"), QueueLen(b"q"), ListKeys(),
    ]  # fmt: skip


@given(st.lists(REQUESTS, max_size=8), st.data())
def test_any_requests_in_any_chunks_round_trip(
    requests: list[wire.Request], data: st.DataObject
) -> None:
    stream = b"".join(encode_request(r) for r in requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder, got = RequestDecoder(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got.extend(decoder.feed(stream[start:end]))
    assert got == requests
    assert decoder.buffered == 0


@given(REQUESTS, st.integers(1, 7))
def test_a_request_cut_short_waits_for_the_rest(request_: wire.Request, piece: int) -> None:
    data = encode_request(request_)
    decoder = RequestDecoder()
    for i in range(0, len(data) - 1, piece):
        assert decoder.feed(data[i : min(i + piece, len(data) - 1)]) == []
    assert decoder.feed(data[-1:]) == [request_]


def test_unknown_query_type_fails_and_stays_failed() -> None:
    decoder = RequestDecoder()
    with pytest.raises(TorchProtocolError, match="unknown query type 99"):
        decoder.feed(b"\x63")
    with pytest.raises(TorchProtocolError, match="already failed"):
        decoder.feed(b"\x07")


def test_a_huge_length_is_refused_before_its_bytes_arrive() -> None:
    decoder = RequestDecoder(Limits(max_request=1000))
    with pytest.raises(TorchProtocolError, match="1000-byte limit"):
        decoder.feed(b"\x01" + struct.pack("<Q", 1 << 40))
    assert decoder.buffered == 0


def test_too_many_keys_are_refused() -> None:
    with pytest.raises(TorchProtocolError, match="the limit is 4"):
        RequestDecoder(Limits(max_keys=4)).feed(b"\x06" + struct.pack("<Q", 5))


def test_the_limit_counts_the_whole_request() -> None:
    limits = Limits(max_request=1 + 8 + 10 + 8 + 10)
    assert RequestDecoder(limits).feed(encode_request(Set(b"k" * 10, b"v" * 10)))
    with pytest.raises(TorchProtocolError):
        RequestDecoder(limits).feed(encode_request(Set(b"k" * 10, b"v" * 11)))


def test_a_large_value_in_small_pieces_is_not_reparsed_each_time() -> None:
    decoder = RequestDecoder()
    data = encode_request(Set(b"k", b"x" * 100_000))
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert decoder.feed(pieces[0]) == []
    assert decoder._need == len(data)
    for piece in pieces[1:-1]:
        assert decoder.feed(piece) == []
    assert decoder.feed(pieces[-1]) == [Set(b"k", b"x" * 100_000)]


REPLIES = [
    (BytesReply(b"v1"), "02 00 00 00 00 00 00 00 76 31"),
    (IntReply(5), "05 00 00 00 00 00 00 00"),
    (IntReply(-3), "fd ff ff ff ff ff ff ff"),
    (CheckReply(ready=True), "00"),
    (CheckReply(ready=False), "01"),
    (WaitReply(WaitResponse.STOP_WAITING), "00"),
    (WaitReply(WaitResponse.WAIT_CANCELED), "01"),
    (PingReply(0x37A4), "a4 37 00 00"),
    (ValuesReply((b"xy", b"5")), "02 00 00 00 00 00 00 00 78 79 01 00 00 00 00 00 00 00 35"),
    (ValuesReply(()), ""),
    (
        KeysReply((b"/lk1", b"init/")),
        "02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 2f 6c 6b 31"
        " 05 00 00 00 00 00 00 00 69 6e 69 74 2f",
    ),
    (QueuePopReply(b"item"), "01 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 69 74 65 6d"),
    (QueuePopReply(None), "00 00 00 00 00 00 00 00"),
]


@pytest.mark.parametrize(("reply", "hex_bytes"), REPLIES)
def test_replies_are_the_bytes_torchs_server_sends(reply: wire.Reply, hex_bytes: str) -> None:
    assert encode_reply(reply) == bytes.fromhex(hex_bytes)
