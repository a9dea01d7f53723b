"""The semantics every store backend must offer the rendezvous.

Written only against ``KeyValueStore`` and the harness in ``conftest.py``, so a new
backend passes or fails the same suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from tests.contract.store_backends import Harness, Scenario

from rallypoint.store import (
    EventKind,
    KeyValue,
    KeyValueStore,
    LeaseNotFoundError,
    StoreConnectionError,
    StoreRequestError,
    WatchEvent,
    WatchStream,
)

Contract = Callable[[Scenario], None]


async def next_event(watch: WatchStream) -> WatchEvent:
    return await asyncio.wait_for(anext(watch), 3)


async def next_events(watch: WatchStream, n: int) -> list[tuple[str, str | None, EventKind]]:
    return [(e.key, e.value, e.kind) for e in [await next_event(watch) for _ in range(n)]]


def test_get_put(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        assert await s.get("k") is None
        put = await s.put("k", "v")
        assert put.ok
        assert put.value == "v"
        assert put.revision > 0
        assert await s.get("k") == KeyValue("k", "v", put.revision)

    contract(scenario)


def test_values_are_opaque_strings(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        for value in ["", " ", "é☃\n\x00", '{"json": [1]}', "x" * 10_000]:
            await s.put("k", value)
            got = await s.get("k")
            assert got is not None
            assert got.value == value

    contract(scenario)


def test_every_change_raises_the_revision(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        revisions = [
            (await s.put("a", "1")).revision,
            (await s.put("b", "1")).revision,
            (await s.put("a", "2")).revision,
        ]
        assert revisions == sorted(set(revisions))
        assert (await s.range("")).revision == revisions[-1]
        await s.delete("b")
        assert (await s.range("")).revision > revisions[-1]

    contract(scenario)


def test_create_only(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        first = await s.put("k", "mine", expected_revision=0)
        assert first.ok
        second = await s.put("k", "yours", expected_revision=0)
        assert (second.ok, second.revision, second.value) == (False, first.revision, "mine")

    contract(scenario)


def test_compare_and_set(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        old = await s.put("k", "1")
        new = await s.put("k", "2", expected_revision=old.revision)
        assert new.ok
        stale = await s.put("k", "3", expected_revision=old.revision)
        assert (stale.ok, stale.revision, stale.value) == (False, new.revision, "2")
        absent = await s.put("nothing", "x", expected_revision=new.revision)
        assert (absent.ok, absent.revision, absent.value) == (False, 0, None)

    contract(scenario)


def test_only_one_racer_wins_a_create(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        stores = [await h.connect() for _ in range(5)]
        results = await asyncio.gather(
            *(s.put("leader", str(i), expected_revision=0) for i, s in enumerate(stores))
        )
        winners = [i for i, r in enumerate(results) if r.ok]
        assert len(winners) == 1
        assert all(r.value == str(winners[0]) for r in results)

    contract(scenario)


def test_delete(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        put = await s.put("k", "v")
        assert not (await s.delete("k", expected_revision=put.revision + 100)).ok
        assert (await s.delete("k", expected_revision=put.revision)).ok
        assert await s.get("k") is None
        assert not (await s.delete("k")).ok
        await s.put("k", "again")
        assert (await s.delete("k")).ok

    contract(scenario)


def test_add_is_atomic_across_clients(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        a, b = await h.connect(), await h.connect()
        assert await a.add("n", 0) == 0
        await asyncio.gather(*(s.add("n", 1) for s in [a, b] * 25))
        assert await b.add("n", 10) == 60
        got = await a.get("n")
        assert got is not None
        assert got.value == "60"

    contract(scenario)


def test_add_to_a_non_integer_fails(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        await s.put("k", "twelve")
        with pytest.raises(StoreRequestError):
            await s.add("k", 1)
        assert await s.add("ok", 2) == 2  # the connection is still usable

    contract(scenario)


def test_range_by_prefix(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        for key in ["nodes/b", "nodes/a", "nodesX", "other/a"]:
            await s.put(key, key)
        result = await s.range("nodes/")
        assert [e.key for e in result.entries] == ["nodes/a", "nodes/b"]
        assert all(e.value == e.key and 0 < e.revision <= result.revision for e in result.entries)
        assert (await s.range("none/")).entries == ()

    contract(scenario)


def test_watch_sees_later_changes_under_prefix(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        watcher, writer = await h.connect(), await h.connect()
        watch = await watcher.watch("nodes/")
        await writer.put("other", "x")
        await writer.put("nodes/a", "1")
        await writer.put("nodes/a", "2")
        await writer.delete("nodes/a")
        assert await next_events(watch, 3) == [
            ("nodes/a", "1", EventKind.PUT),
            ("nodes/a", "2", EventKind.PUT),
            ("nodes/a", None, EventKind.DELETE),
        ]

    contract(scenario)


def test_watch_events_carry_increasing_revisions(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        watch = await s.watch("")
        puts = [await s.put(f"k{i}", "v") for i in range(5)]
        events = [await next_event(watch) for _ in range(5)]
        assert [e.revision for e in events] == [p.revision for p in puts]
        assert all(e.watch_id == watch.id for e in events)

    contract(scenario)


def test_watch_from_revision_replays(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        await s.put("p/a", "1")
        snapshot = await s.range("p/")
        await s.put("p/b", "2")
        await s.delete("p/a")
        watch = await s.watch("p/", start_revision=snapshot.revision)
        await s.put("p/c", "3")
        assert await next_events(watch, 3) == [
            ("p/b", "2", EventKind.PUT),
            ("p/a", None, EventKind.DELETE),
            ("p/c", "3", EventKind.PUT),
        ]

    contract(scenario)


def test_cancelled_watch_ends(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        watch = await s.watch("")
        await s.put("k", "v")
        await watch.cancel()
        await s.put("k", "w")
        seen = [e async for e in watch]
        assert [(e.key, e.value) for e in seen] in ([], [("k", "v")])

    contract(scenario)


def test_lease_revoke_deletes_keys(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        owner, watcher = await h.connect(), await h.connect()
        lease = await owner.lease_grant(60)
        await owner.put("nodes/a", "1", lease=lease)
        await owner.put("plain", "stays")
        watch = await watcher.watch("nodes/")
        await owner.lease_revoke(lease)
        assert await next_events(watch, 1) == [("nodes/a", None, EventKind.DELETE)]
        assert await watcher.get("plain") is not None
        with pytest.raises(LeaseNotFoundError):
            await owner.put("nodes/b", "1", lease=lease)
        with pytest.raises(LeaseNotFoundError):
            await owner.lease_keepalive(lease)

    contract(scenario)


def test_lease_ttl_expiry_deletes_keys(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        owner, watcher = await h.connect(), await h.connect()
        watch = await watcher.watch("nodes/")
        lease = await owner.lease_grant(0.2)
        await owner.put("nodes/a", "1", lease=lease)
        assert await next_events(watch, 2) == [
            ("nodes/a", "1", EventKind.PUT),
            ("nodes/a", None, EventKind.DELETE),
        ]
        assert await watcher.get("nodes/a") is None

    contract(scenario)


def test_kept_alive_lease_outlives_its_ttl(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        s = await h.connect()
        async with s.lease(0.4, keepalive_interval=0.05) as lease:
            await s.put("k", "v", lease=lease)
            await asyncio.sleep(0.9)  # two TTLs pass; the keep-alives must hold the key
            assert await s.get("k") is not None
        assert await s.get("k") is None  # revoked on leaving the block

    contract(scenario)


def test_dead_session_keys_vanish_promptly(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        dying, watcher = await h.connect(), await h.connect()
        lease = await dying.lease_grant(3600)
        await dying.put("nodes/dying", "1", lease=lease)
        watch = await watcher.watch("nodes/")
        await h.kill(dying)
        assert await next_events(watch, 1) == [("nodes/dying", None, EventKind.DELETE)]
        with pytest.raises(StoreConnectionError):
            await dying.get("nodes/dying")

    contract(scenario)


def test_many_watchers_all_see_a_change(contract: Contract) -> None:
    async def scenario(h: Harness) -> None:
        stores: list[KeyValueStore] = [await h.connect() for _ in range(4)]
        watches = [await s.watch("") for s in stores]
        await stores[0].put("k", "v")
        for watch in watches:
            assert await next_events(watch, 1) == [("k", "v", EventKind.PUT)]

    contract(scenario)
