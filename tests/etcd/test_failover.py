"""A three-member etcd on loopback loses a member mid-job; the store and the job go on."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from rallypoint.clock import SystemClock
from rallypoint.rendezvous.dynamic import StoreRendezvous, Timeouts
from rallypoint.rendezvous.machine import Change, Settings
from rallypoint.rendezvous.records import CLOSED_KEY, NodeRecord
from rallypoint.store import EventKind
from rallypoint.store.etcd import EtcdStore
from tests.contract.etcd_servers import EtcdCluster

from .conftest import needs_etcd

pytestmark = [needs_etcd, pytest.mark.integration]


def _index(cluster: EtcdCluster, store: EtcdStore) -> int:
    endpoint = store.gateway.rotation()[0]
    return cluster.client_ports.index(endpoint.port)


def _follower_first(cluster: EtcdCluster) -> list[tuple[str, int]]:
    """The endpoints, starting with a member that is not the leader."""
    leader = cluster.leader()
    first = (leader + 1) % cluster.n
    return cluster.endpoints[first:] + cluster.endpoints[:first]


def test_store_keeps_working_when_its_member_is_killed(etcd3: EtcdCluster) -> None:
    async def main() -> None:
        endpoints = _follower_first(etcd3)
        store = await EtcdStore.connect(endpoints, "job", timeout=5, session_ttl=1)
        other = await EtcdStore.connect(endpoints[::-1], "job", timeout=5)
        try:
            watch = await store.watch("")
            lease = await store.lease_grant(1)  # etcd-side TTL 1 s: refreshes must fail over
            await store.put("nodes/a", "1", lease=lease)
            before = [await store.put(f"k{i}", str(i)) for i in range(3)]
            victim = _index(etcd3, store)
            assert victim != etcd3.leader()
            etcd3.kill(victim)  # the member serving this store's requests and its watch
            keeper = asyncio.create_task(_keep(store, lease))
            cas = await store.put("k0", "x", expected_revision=before[0].revision)
            assert cas.ok
            assert await other.add("n", 5) == 5
            assert await store.add("n", 1) == 6
            after = [await store.put(f"j{i}", str(i)) for i in range(3)]
            await asyncio.sleep(1.6)  # longer than the lease's etcd TTL
            assert await other.get("nodes/a") is not None  # the lease was kept alive
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            expected = 1 + len(before) + 1 + 2 + len(after)
            events = [await asyncio.wait_for(anext(watch), 5) for _ in range(expected)]
            revisions = [e.revision for e in events]
            assert revisions == sorted(set(revisions))  # each once, in order
            assert [(e.key, e.kind) for e in events][-3:] == [
                (f"j{i}", EventKind.PUT) for i in range(3)
            ]
            assert _index(etcd3, store) != victim
        finally:
            await store.close()
            await other.close()

    asyncio.run(main())


def test_writes_in_flight_when_the_leader_dies_are_applied_once(etcd3: EtcdCluster) -> None:
    """Adds sent to the leader as it is killed: sent again elsewhere, each counted once."""

    async def main() -> None:
        leader = etcd3.leader()
        endpoints = etcd3.endpoints[leader:] + etcd3.endpoints[:leader]
        store = await EtcdStore.connect(endpoints, "job", timeout=15)
        try:
            await store.add("n", 0)  # a keep-alive connection to the leader
            adds = [asyncio.create_task(store.add("n", 1)) for _ in range(5)]
            puts = [asyncio.create_task(store.put(f"p{i}", "x")) for i in range(5)]
            await asyncio.sleep(0.002)  # on their way (some may be applied already)
            etcd3.kill(leader)
            assert sorted(await asyncio.gather(*adds)) == [1, 2, 3, 4, 5]
            assert all(r.ok for r in await asyncio.gather(*puts))
            kv = await store.get("n")
            assert kv is not None
            assert kv.value == "5"
        finally:
            await store.close()

    asyncio.run(main())


async def _keep(store: EtcdStore, lease: int) -> None:
    while True:
        await asyncio.sleep(0.3)
        await store.lease_keepalive(lease)


def _node(i: int) -> NodeRecord:
    return NodeRecord(f"node{i}", "127.0.0.1", os.getpid(), 1, "default", 29500 + i)


def test_a_job_finishes_when_an_etcd_member_dies(etcd3: EtcdCluster) -> None:
    """Three agents meet over etcd, a member is killed, they run on and finish together."""
    timeouts = Timeouts(join=20, last_call=0.2, lease_ttl=1.5, exit_barrier=10, close=5)
    settings = Settings(3, 3, timeouts.last_call)

    async def main() -> None:
        nodes = []
        ordered = _follower_first(etcd3)
        for i in range(3):  # each agent lists the endpoints in its own order
            endpoints = ordered[i:] + ordered[:i]
            store = await EtcdStore.connect(endpoints, "job", timeout=5, session_ttl=2)
            node = StoreRendezvous(
                store,
                None,
                _node(i),
                settings,
                timeouts,
                SystemClock(),
            )
            await node.start()
            nodes.append(node)
        try:
            results = await asyncio.gather(*(n.next_round() for n in nodes))
            assert sorted(r.group_rank for r in results) == [0, 1, 2]
            assert {r.group_world_size for r in results} == {3}
            victim = etcd3.client_ports.index(ordered[0][1])
            etcd3.kill(victim)  # mid-job: the member agent 0 talks to
            await asyncio.sleep(2.5)  # the "training": more than a lease TTL
            assert [n.running_decision().change for n in nodes] == [Change.KEEP] * 3
            assert await nodes[1].spend_restart() == 1
            await asyncio.gather(*(n.finish() for n in nodes))
            closed = await nodes[2]._client.get(CLOSED_KEY)
            assert closed is not None
            assert "succeeded" in closed.value
        finally:
            await asyncio.gather(*(n.close() for n in nodes))

    asyncio.run(main())
