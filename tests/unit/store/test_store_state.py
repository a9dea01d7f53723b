"""The pure store state, driven with explicit times: no sockets, no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rallypoint.store import (
    ErrorCode,
    EventKind,
    KeyValue,
    LeaseNotFoundError,
    RevisionCompactedError,
    StoreRequestError,
    WatchEvent,
)
from rallypoint.store.api import CasResult
from rallypoint.store.state import Delivery, Quota, StoreState

A, B = 1, 2  # two owners (connections)


def events(state: StoreState) -> list[tuple[int, str, str | None, int, EventKind]]:
    return [
        (d.owner, d.event.key, d.event.value, d.event.revision, d.event.kind)
        for d in state.take_deliveries()
    ]


def test_put_get_and_revisions() -> None:
    s = StoreState()
    assert s.revision == 0
    assert s.get("k") is None
    assert s.put("k", "v1", None, None) == CasResult(True, 1, "v1")
    assert s.put("other", "x", None, None).revision == 2
    assert s.put("k", "v2", None, None) == CasResult(True, 3, "v2")
    assert s.get("k") == KeyValue("k", "v2", 3)
    assert s.revision == 3


def test_create_only_put() -> None:
    s = StoreState()
    assert s.put("k", "first", 0, None).ok
    assert s.put("k", "second", 0, None) == CasResult(False, 1, "first")
    assert s.revision == 1


def test_compare_and_set_on_mod_revision() -> None:
    s = StoreState()
    rev = s.put("k", "a", None, None).revision
    s.put("unrelated", "x", None, None)
    assert s.put("k", "b", rev, None) == CasResult(True, 3, "b")
    assert s.put("k", "c", rev, None) == CasResult(False, 3, "b")  # stale revision
    assert s.put("absent", "c", 5, None) == CasResult(False, 0, None)


def test_negative_expected_revision_rejected() -> None:
    s = StoreState()
    with pytest.raises(StoreRequestError) as info:
        s.put("k", "v", -1, None)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert s.revision == 0


def test_delete() -> None:
    s = StoreState()
    rev = s.put("k", "v", None, None).revision
    assert s.delete("k", rev + 7) == CasResult(False, rev, "v")
    assert s.delete("k", rev) == CasResult(True, 0, None)
    assert s.delete("k", None) == CasResult(False, 0, None)
    assert s.get("k") is None
    assert s.revision == 2


def test_add_counter() -> None:
    s = StoreState()
    assert s.add("n", 5) == KeyValue("n", "5", 1)
    assert s.add("n", -7) == KeyValue("n", "-2", 2)
    s.put("text", "abc", None, None)
    with pytest.raises(StoreRequestError) as info:
        s.add("text", 1)
    assert info.value.code is ErrorCode.NOT_AN_INTEGER


def test_range_by_prefix_sorted() -> None:
    s = StoreState()
    for key in ["n/b", "n/a", "m/x", "n/c"]:
        s.put(key, key.upper(), None, None)
    entries, revision = s.range("n/")
    assert [e.key for e in entries] == ["n/a", "n/b", "n/c"]
    assert entries[0] == KeyValue("n/a", "N/A", 2)
    assert revision == 4
    assert len(s.range("")[0]) == 4


@settings(deadline=None, max_examples=100)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=30))
def test_revisions_strictly_increase(ops: list[tuple[str, bool]]) -> None:
    s = StoreState()
    last = 0
    for key, is_put in ops:
        before = s.revision
        result = s.put(key, "v", None, None) if is_put else s.delete(key, None)
        assert s.revision == before + (1 if result.ok else 0)
        assert s.revision >= last
        last = s.revision
        for entry in s.range("")[0]:
            assert 0 < entry.revision <= s.revision


def test_watch_fan_out_by_prefix() -> None:
    s = StoreState()
    w_all = s.watch(A, "", None)
    w_nodes = s.watch(B, "nodes/", None)
    s.put("nodes/1", "x", None, None)
    s.put("other", "y", None, None)
    s.delete("nodes/1", None)
    got = s.take_deliveries()
    assert [(d.owner, d.event.watch_id, d.event.key) for d in got] == [
        (A, w_all, "nodes/1"),
        (B, w_nodes, "nodes/1"),
        (A, w_all, "other"),
        (A, w_all, "nodes/1"),
        (B, w_nodes, "nodes/1"),
    ]
    assert got[-1].event.kind is EventKind.DELETE
    assert got[-1].event.value is None
    assert s.take_deliveries() == []


def test_unwatch() -> None:
    s = StoreState()
    w = s.watch(A, "", None)
    with pytest.raises(StoreRequestError):
        s.unwatch(B, w)  # not B's watch
    s.unwatch(A, w)
    s.put("k", "v", None, None)
    assert s.take_deliveries() == []
    with pytest.raises(StoreRequestError):
        s.unwatch(A, w)


def test_watch_replays_from_revision() -> None:
    s = StoreState()
    s.put("p/a", "1", None, None)
    s.put("q/b", "2", None, None)
    s.put("p/c", "3", None, None)
    w = s.watch(A, "p/", 1)
    assert [d.event.key for d in s.take_deliveries()] == ["p/c"]
    s.put("p/d", "4", None, None)
    assert s.take_deliveries() == [Delivery(A, WatchEvent(w, "p/d", "4", 4, EventKind.PUT))]


def test_watch_replay_too_old_is_compacted() -> None:
    s = StoreState(Quota(history_limit=3))
    for i in range(5):
        s.put("k", str(i), None, None)
    s.watch(A, "", 2)  # revisions 3..5 are kept
    assert [d.event.revision for d in s.take_deliveries()] == [3, 4, 5]
    with pytest.raises(RevisionCompactedError):
        s.watch(A, "", 1)
    with pytest.raises(StoreRequestError):
        s.watch(A, "", -1)


def test_lease_expiry_deletes_keys_and_notifies() -> None:
    s = StoreState()
    lease = s.grant(A, ttl=10.0, now=100.0)
    s.put("nodes/a", "x", None, lease)
    s.put("nodes/b", "y", None, lease)
    s.watch(B, "nodes/", None)
    assert s.next_deadline() == 110.0
    assert s.expire(109.9) == []
    assert s.get("nodes/a") is not None
    assert s.expire(110.0) == [lease]
    assert s.range("")[0] == ()
    assert events(s) == [
        (B, "nodes/a", None, 3, EventKind.DELETE),
        (B, "nodes/b", None, 4, EventKind.DELETE),
    ]
    assert s.next_deadline() is None
    with pytest.raises(LeaseNotFoundError):
        s.keepalive(lease, 110.0)


def test_keepalive_moves_deadline() -> None:
    s = StoreState()
    first = s.grant(A, 10.0, now=0.0)
    second = s.grant(A, 15.0, now=0.0)
    s.put("k", "v", None, first)
    s.keepalive(first, now=8.0)
    assert s.next_deadline() == 15.0
    assert s.expire(16.0) == [second]
    assert s.get("k") is not None
    assert s.next_deadline() == 18.0
    assert s.expire(18.0) == [first]
    assert s.get("k") is None


def test_revoke_and_unknown_lease() -> None:
    s = StoreState()
    lease = s.grant(A, 5.0, now=0.0)
    s.put("k", "v", None, lease)
    s.revoke(A, lease)
    assert s.get("k") is None
    with pytest.raises(LeaseNotFoundError):
        s.put("k", "v", None, lease)
    with pytest.raises(LeaseNotFoundError):
        s.revoke(A, lease)
    assert s.expire(1000.0) == []


def test_put_without_lease_detaches_key() -> None:
    s = StoreState()
    lease = s.grant(A, 5.0, now=0.0)
    s.put("k", "v", None, lease)
    s.put("k", "w", None, None)
    s.revoke(A, lease)
    assert s.get("k") == KeyValue("k", "w", 2)


def test_add_keeps_lease() -> None:
    s = StoreState()
    lease = s.grant(A, 5.0, now=0.0)
    s.put("n", "1", None, lease)
    s.add("n", 1)
    s.revoke(A, lease)
    assert s.get("n") is None


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("inf"), float("nan")])
def test_grant_rejects_bad_ttl(ttl: float) -> None:
    with pytest.raises(StoreRequestError):
        StoreState().grant(A, ttl, now=0.0)


def test_drop_owner_ends_its_leases_and_watches() -> None:
    s = StoreState()
    mine = s.grant(A, 60.0, now=0.0)
    theirs = s.grant(B, 60.0, now=0.0)
    s.put("a", "1", None, mine)
    s.put("b", "2", None, theirs)
    s.watch(A, "", None)
    s.watch(B, "", None)
    s.take_deliveries()
    s.drop_owner(A)
    assert events(s) == [(B, "a", None, 3, EventKind.DELETE)]  # A hears nothing more
    assert s.get("b") is not None
    with pytest.raises(LeaseNotFoundError):
        s.keepalive(mine, 1.0)
    s.keepalive(theirs, 1.0)
