"""A write is applied once even when etcd's reply is lost: real etcd, a connection reset injected.

``ResettingProxy`` sits between the store and a real etcd member. Armed, it forwards the next
request for one gateway path, waits until etcd has answered (so the write is applied), then
resets the store's connection instead of relaying the answer. Before the fix, the pool took
such a reset on a reused keep-alive connection for "not sent" and sent the transaction again,
so ``add`` counted twice.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from rallypoint.store.etcd import EtcdOutcomeUnknownError, EtcdStore
from tests.contract.etcd_servers import EtcdCluster

from .conftest import needs_etcd
from .resetting_proxy import ResettingProxy

pytestmark = [needs_etcd, pytest.mark.integration]

Scenario = Callable[[EtcdStore, ResettingProxy], Awaitable[None]]


def _run(etcd: EtcdCluster, scenario: Scenario) -> None:
    """Run ``scenario`` with a store that reaches ``etcd`` only through a resetting proxy;
    check that closing the store deleted its receipts."""

    async def main() -> None:
        async with asyncio.timeout(20), ResettingProxy(etcd.endpoints[0]) as proxy:
            store = await EtcdStore.connect([proxy.endpoint], "job", timeout=5)
            try:
                await scenario(store, proxy)
            finally:
                await store.close()

    asyncio.run(main())
    receipts = base64.b64encode(b"/rallypoint/job\x00receipts/").decode()
    end = base64.b64encode(b"/rallypoint/job\x00receipts0").decode()
    assert _listed(etcd, "/v3/kv/range", {"key": receipts, "range_end": end}, "kvs") == []


def _listed(etcd: EtcdCluster, path: str, body: dict[str, object], name: str) -> list[Any]:
    """A list field of etcd's reply to ``path`` (absent means empty), asked directly."""
    return cast(list[Any], etcd.post(path, body).get(name) or [])


def _raw(etcd: EtcdCluster, key: str) -> dict[str, Any] | None:
    """etcd's own record of a store key (value, version, revisions), read directly."""
    full = base64.b64encode(f"/rallypoint/job/{key}".encode()).decode()
    kvs = _listed(etcd, "/v3/kv/range", {"key": full}, "kvs")
    assert len(kvs) <= 1
    return {**kvs[0], "value": base64.b64decode(kvs[0]["value"]).decode()} if kvs else None


def test_add_counts_once_when_the_reply_is_lost(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        assert await store.add("job/restarts", 1) == 1
        proxy.arm("/v3/kv/txn")
        assert await store.add("job/restarts", 1) == 2
        assert proxy.sprung == 1  # the reply to the applied transaction was lost
        print(f"gateway requests etcd received: {proxy.requests}")

    _run(etcd, scenario)
    kv = _raw(etcd, "job/restarts")
    assert kv is not None
    assert kv["value"] == "2"
    assert kv["version"] == "2"  # two modifications: one per add


def test_compare_and_set_reports_its_own_write_when_the_reply_is_lost(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        await store.get("warm")  # so that the put goes on a reused keep-alive connection
        proxy.arm("/v3/kv/txn")
        result = await store.put("job/coordinator", "node0", expected_revision=0)
        assert proxy.sprung == 1
        assert result.ok  # not "someone else wrote it first": that someone was us
        stored = await store.get("job/coordinator")
        assert stored is not None
        assert result.revision == stored.revision

    _run(etcd, scenario)


def test_a_plain_put_is_applied_once_when_the_reply_is_lost(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        watch = await store.watch("")
        proxy.arm("/v3/kv/txn")
        result = await store.put("k", "v")
        assert proxy.sprung == 1
        assert result.ok
        event = await asyncio.wait_for(anext(watch), 5)
        assert (event.key, event.revision) == ("k", result.revision)
        await store.put("after", "x")  # the next event is this one: no second put of k
        assert (await asyncio.wait_for(anext(watch), 5)).key == "after"

    _run(etcd, scenario)
    kv = _raw(etcd, "k")
    assert kv is not None
    assert kv["version"] == "1"


def test_a_delete_says_it_deleted_when_the_reply_is_lost(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        await store.put("k", "v")
        proxy.arm("/v3/kv/txn")
        assert (await store.delete("k")).ok
        assert proxy.sprung == 1
        assert await store.get("k") is None
        assert not (await store.delete("k")).ok

    _run(etcd, scenario)


def test_a_lease_is_granted_once_when_the_reply_is_lost(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        await store.get("warm")
        proxy.arm("/v3/lease/grant")
        lease = await store.lease_grant(30)
        assert proxy.sprung == 1
        assert proxy.count("/v3/lease/grant") == 2  # sent again: the copy found it there
        await store.put("held", "1", lease=lease)
        leases = _listed(etcd, "/v3/lease/leases", {}, "leases")
        assert [int(x["ID"]) for x in leases] == [lease]

    _run(etcd, scenario)


def test_a_request_that_is_not_replay_safe_is_never_sent_twice(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        await store.put("k", "v")
        proxy.arm("/v3/kv/deleterange")
        request = {"key": base64.b64encode(store.full_key("k").encode()).decode()}
        with pytest.raises(EtcdOutcomeUnknownError, match="outcome is unknown"):
            await store.gateway.call("/v3/kv/deleterange", request, "delete", replay_safe=False)
        assert proxy.sprung == 1
        assert proxy.count("/v3/kv/deleterange") == 1
        assert await store.get("k") is None  # it was applied, once

    _run(etcd, scenario)


def test_a_request_provably_not_sent_goes_again_on_a_fresh_connection(etcd: EtcdCluster) -> None:
    async def scenario(store: EtcdStore, proxy: ResettingProxy) -> None:
        await store.put("k", "v")
        proxy.reset_idle()  # the idle keep-alive connection gets a RST...
        # ...once the proxy's transport closes its socket (the next loop step, which runs
        # before the step that would show the store its socket's error): the request then
        # meets a connection the store still takes for alive, and the first send fails.
        await asyncio.sleep(0)
        request = {"key": base64.b64encode(store.full_key("k").encode()).decode()}
        reply = await store.gateway.call("/v3/kv/deleterange", request, "delete", replay_safe=False)
        assert reply["deleted"] == "1"
        assert proxy.count("/v3/kv/deleterange") == 1

    _run(etcd, scenario)
