"""The torch store's state: torch's libuv server's rules, and waits as events."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rallypoint.torchstore.state import TorchStoreState, Wakeup, stoll
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
    Request,
    Set,
    TorchProtocolError,
    Validate,
    ValuesReply,
    Wait,
    WaitReply,
    WaitResponse,
)

STOP = WaitReply(WaitResponse.STOP_WAITING)
CANCELED = WaitReply(WaitResponse.WAIT_CANCELED)


def test_validation_and_ping() -> None:
    state = TorchStoreState()
    assert state.apply(1, Validate(0x3C85F7CE)) is None
    assert state.apply(1, Ping(77)) == PingReply(77)
    with pytest.raises(TorchProtocolError, match="magic"):
        state.apply(1, Validate(1234))


def test_set_get_append_delete_count_list() -> None:
    state = TorchStoreState()
    assert state.apply(1, Set(b"a", b"1")) is None
    assert state.apply(1, Append(b"a", b"2")) is None
    assert state.apply(1, Append(b"b", b"x")) is None
    assert state.apply(1, Get(b"a")) == BytesReply(b"12")
    assert state.apply(1, Get(b"missing")) == BytesReply(b"")
    assert state.apply(1, NumKeys()) == IntReply(2)
    assert state.apply(1, ListKeys()) == KeysReply((b"a", b"b"))
    assert state.apply(1, DeleteKey(b"a")) == IntReply(1)
    assert state.apply(1, DeleteKey(b"a")) == IntReply(0)
    assert state.apply(1, MultiSet((b"p", b"q"), (b"1", b"2"))) is None
    assert state.apply(1, MultiGet((b"q", b"p", b"zz"))) == ValuesReply((b"2", b"1", b""))


@pytest.mark.parametrize(
    ("current", "expected", "desired", "reply", "after"),
    [
        (b"v1", b"v1", b"v2", b"v2", b"v2"),  # matches: set
        (b"v1", b"zz", b"v2", b"v1", b"v1"),  # differs: the current value
        (None, b"", b"new", b"new", b"new"),  # absent and expected empty: set
        (None, b"x", b"new", b"x", None),  # absent, expected something: expected back
        (None, b"", b"", b"", b""),  # an empty value is still a key
    ],
)
def test_compare_set_as_torch(
    current: bytes | None, expected: bytes, desired: bytes, reply: bytes, after: bytes | None
) -> None:
    state = TorchStoreState()
    if current is not None:
        state.apply(1, Set(b"k", current))
    assert state.apply(1, CompareSet(b"k", expected, desired)) == BytesReply(reply)
    assert state.keys.get(b"k") == after


@pytest.mark.parametrize(
    ("text", "number"),
    [(b"12", 12), (b" 12", 12), (b"+7", 7), (b"-3", -3), (b"7x", 7), (b"\t\n-0", 0)],
)
def test_add_parses_as_stoll(text: bytes, number: int) -> None:
    assert stoll(text) == number
    state = TorchStoreState()
    state.apply(1, Set(b"n", text))
    assert state.apply(1, Add(b"n", 1)) == IntReply(number + 1)
    assert state.keys[b"n"] == str(number + 1).encode()


@pytest.mark.parametrize("text", [b"", b"x1", b"- 1", b"99999999999999999999"])
def test_add_on_a_value_stoll_refuses_ends_the_connection(text: bytes) -> None:
    state = TorchStoreState()
    state.apply(1, Set(b"n", text))
    with pytest.raises(TorchProtocolError):
        state.apply(1, Add(b"n", 1))


def test_add_wraps_around_at_64_bits() -> None:
    state = TorchStoreState()
    assert state.apply(1, Add(b"n", 2**63 - 1)) == IntReply(2**63 - 1)
    assert state.apply(1, Add(b"n", 1)) == IntReply(-(2**63))


def test_a_wait_is_answered_when_its_last_key_appears() -> None:
    state = TorchStoreState()
    state.apply(1, Set(b"a", b""))
    assert state.apply(2, Wait((b"a", b"b", b"c"))) is None
    state.apply(1, Set(b"b", b""))
    assert state.take_wakeups() == []
    state.apply(1, Add(b"c", 1))
    assert state.take_wakeups() == [Wakeup(2, STOP)]
    assert state.pending_waits == 0


def test_a_wait_on_present_or_no_keys_is_answered_at_once() -> None:
    state = TorchStoreState()
    state.apply(1, Set(b"a", b""))
    assert state.apply(2, Wait((b"a",))) == STOP
    assert state.apply(2, Wait(())) == STOP


def test_a_key_deleted_after_it_appeared_still_counts() -> None:
    state = TorchStoreState()
    state.apply(2, Wait((b"d1", b"d2")))
    state.apply(1, Set(b"d1", b"x"))
    state.apply(1, DeleteKey(b"d1"))
    state.apply(1, Set(b"d2", b"x"))
    assert state.take_wakeups() == [Wakeup(2, STOP)]


def test_every_write_that_creates_a_key_wakes_its_waiters() -> None:
    writes: list[Request] = [
        Set(b"k", b"v"),
        CompareSet(b"k", b"", b"v"),
        Add(b"k", 1),
        Append(b"k", b"v"),
        MultiSet((b"k",), (b"v",)),
        QueuePush(b"k", b"v"),
    ]
    for write in writes:
        state = TorchStoreState()
        state.apply(7, Wait((b"k",)))
        state.apply(1, write)
        assert state.take_wakeups() == [Wakeup(7, STOP)], write


def test_a_compare_set_that_sets_nothing_wakes_nobody() -> None:
    state = TorchStoreState()
    state.apply(7, Wait((b"k",)))
    state.apply(1, CompareSet(b"k", b"x", b"v"))
    assert state.take_wakeups() == []


def test_cancel_ends_the_owners_waits_and_is_always_answered() -> None:
    state = TorchStoreState()
    state.apply(2, Wait((b"never",)))
    state.apply(3, Wait((b"never",)))
    assert state.apply(2, CancelWait()) == CANCELED
    assert state.apply(2, CancelWait()) == CANCELED  # nothing pending: still answered
    state.apply(1, Set(b"never", b""))
    assert state.take_wakeups() == [Wakeup(3, STOP)]


def test_a_dropped_owner_leaves_no_waiter_behind() -> None:
    state = TorchStoreState()
    state.apply(2, Wait((b"a", b"b")))
    state.drop_owner(2)
    assert state.pending_waits == 0
    state.apply(1, MultiSet((b"a", b"b"), (b"", b"")))
    assert state.take_wakeups() == []
    assert not state._waiting


def test_queues_live_beside_the_keys() -> None:
    state = TorchStoreState()
    state.apply(1, QueuePush(b"q", b"1"))
    state.apply(1, QueuePush(b"q", b"2"))
    assert state.apply(1, QueueLen(b"q")) == IntReply(2)
    assert state.apply(1, NumKeys()) == IntReply(0)
    assert state.apply(1, ListKeys()) == KeysReply(())
    assert state.apply(1, Check((b"q",))) == CheckReply(ready=True)
    assert state.apply(1, Get(b"q")) == BytesReply(b"")
    assert state.apply(1, QueuePop(b"q")) == QueuePopReply(b"1")
    assert state.apply(1, QueuePop(b"q")) == QueuePopReply(b"2")
    assert state.apply(1, QueuePop(b"q")) == QueuePopReply(None)
    assert state.apply(1, Check((b"q",))) == CheckReply(ready=False)  # empty: not present
    assert state.apply(1, Wait((b"q",))) is None


KEYS = st.sampled_from([b"a", b"b", b"c", b"d"])
OPS: st.SearchStrategy[tuple[str, int, list[bytes]]] = st.one_of(
    st.tuples(st.just("wait"), st.integers(1, 4), st.lists(KEYS, max_size=3)),
    st.tuples(st.just("set"), st.just(0), st.lists(KEYS, min_size=1, max_size=1)),
    st.tuples(st.just("delete"), st.just(0), st.lists(KEYS, min_size=1, max_size=1)),
    st.tuples(st.just("cancel"), st.integers(1, 4), st.just([])),
    st.tuples(st.just("drop"), st.integers(1, 4), st.just([])),
)


@given(st.lists(OPS, max_size=40))
def test_waits_end_exactly_when_their_keys_have_all_appeared(
    ops: list[tuple[str, int, list[bytes]]],
) -> None:
    state, present = TorchStoreState(), set[bytes]()
    pending: list[tuple[int, set[bytes]]] = []  # the model: (owner, keys still missing)
    for op, owner, keys in ops:
        woken = _model_step(op, owner, keys, present, pending)
        got = _apply_step(state, op, owner, keys)
        assert got == woken
        assert state.pending_waits == len(pending)


def _model_step(
    op: str,
    owner: int,
    keys: list[bytes],
    present: set[bytes],
    pending: list[tuple[int, set[bytes]]],
) -> list[tuple[int, WaitReply]]:
    if op == "wait":
        missing = set(keys) - present
        if not missing:
            return [(owner, STOP)]
        pending.append((owner, missing))
        return []
    if op in ("cancel", "drop"):
        pending[:] = [p for p in pending if p[0] != owner]
        return [(owner, CANCELED)] if op == "cancel" else []
    if op == "delete":
        present.discard(keys[0])
        return []
    present.add(keys[0])
    woken = []
    for item in list(pending):
        item[1].discard(keys[0])
        if not item[1]:
            pending.remove(item)
            woken.append((item[0], STOP))
    return woken


def _apply_step(
    state: TorchStoreState, op: str, owner: int, keys: list[bytes]
) -> list[tuple[int, WaitReply]]:
    if op == "drop":
        state.drop_owner(owner)
        return []
    make: dict[str, Callable[[], Request]] = {
        "wait": lambda: Wait(tuple(keys)),
        "set": lambda: Set(keys[0], b"v"),
        "delete": lambda: DeleteKey(keys[0]),
        "cancel": CancelWait,
    }
    request = make[op]()
    reply = state.apply(owner if op != "set" else 0, request)
    direct = [(owner, reply)] if isinstance(reply, WaitReply) else []
    return direct + [(w.owner, w.reply) for w in state.take_wakeups()]  # type: ignore[misc]
