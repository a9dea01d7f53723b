"""The nodes' shared digests: the record's codec and size, the job-wide verdict (fake clock),
the watch judging over other nodes' records, and the record in a real store."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator

import pytest

from rallypoint.hangs.board import (
    MAX_RANKS,
    STACKS_PREFIX,
    NodeDigests,
    PublishedRank,
    job_ranks,
    judge_job,
    local_record,
)
from rallypoint.hangs.detector import StuckDetector
from rallypoint.hangs.digest import StackDigest
from rallypoint.hangs.dump import Frame
from rallypoint.hangs.verdict import VerdictKind
from rallypoint.hangs.watch import Hang, HangWatch
from rallypoint.rendezvous.mirror import StoreMirror
from rallypoint.rendezvous.stacks import StoreStackBoard
from rallypoint.store import StoreClient, StoreServer
from rallypoint.tasks import TaskOwner
from rallypoint.workers.stack_pipes import StackPipes
from tests.fakes import FakeClock
from tests.unit.hangs.test_stacks import OWN
from tests.unit.hangs.test_watch import dumps_of

TRAIN = "/job/train.py"
REDUCE = StackDigest(
    "aa",
    Frame("/t/torch/distributed/c10d.py", 9, "all_reduce"),
    "all_reduce",
    Frame(TRAIN, 45, "step"),
)
LOAD = StackDigest("bb", Frame(TRAIN, 33, "load_batch"))


def node(name: str, *ranks: tuple[int, StackDigest, float]) -> NodeDigests:
    return NodeDigests(name, tuple(PublishedRank(r, d, since) for r, d, since in ranks))


def test_the_culprit_on_another_node_is_named_over_all_nodes() -> None:
    here = node("a", (0, REDUCE, 100.0))
    there = node("b", (1, LOAD, 101.0))
    alone, _ = judge_job([here], now=107.0, timeout=5.0)
    assert alone.kind is VerdictKind.ALL_WAITING  # this node's ranks alone blame nobody
    verdict, ranks = judge_job([here, there], now=107.0, timeout=5.0)
    assert verdict.kind is VerdictKind.STALL
    [culprit] = verdict.culprits
    assert culprit.ranks == (1,)
    assert culprit.where == Frame(TRAIN, 33, "load_batch")
    assert culprit.unchanged_for == pytest.approx(6.0)
    assert [g.ranks for g in verdict.waiting] == [(0,)]
    assert [r.rank for r in ranks] == [0, 1]


def test_no_collective_blames_only_the_ranks_stuck_by_now() -> None:
    here = node("a", (0, LOAD, 100.0))
    there = node("b", (1, StackDigest("cc", Frame(TRAIN, 50, "save")), 104.0))
    verdict, _ = judge_job([here, there], now=106.0, timeout=5.0)
    assert verdict.kind is VerdictKind.NO_COLLECTIVE
    assert [g.ranks for g in verdict.culprits] == [(0,)]


def test_a_rank_is_taken_from_the_first_node_naming_it_and_skew_is_clipped() -> None:
    here = node("a", (0, LOAD, 100.0))
    stale = node("b", (0, REDUCE, 90.0), (1, REDUCE, 120.0))  # 1: a clock ahead of ours
    ranks = job_ranks([here, stale], now=110.0)
    assert ranks[0].digest == LOAD
    assert ranks[1].unchanged_for == 0.0


def test_the_record_round_trips_and_stays_small() -> None:
    record = node("a", (0, REDUCE, 100.1234), (1, LOAD, 101.0))
    back = NodeDigests.from_text("a", record.to_text())
    assert back.ranks[0].digest == REDUCE
    assert back.ranks[0].since == pytest.approx(100.123)
    huge = StackDigest("dd", Frame("/x" * 5000 + "/train.py", 1, "f"))
    many = node("a", *((r, huge, 1.0) for r in range(MAX_RANKS + 100)))
    text = many.to_text()
    assert len(text) < MAX_RANKS * 300
    kept = NodeDigests.from_text("a", text)
    assert len(kept.ranks) == MAX_RANKS
    assert kept.ranks[0].digest.top is not None
    assert kept.ranks[0].digest.top.file.endswith("/train.py")


@pytest.mark.parametrize("text", ["", "[]", '{"v":2,"r":[]}', '{"v":1,"r":[[0]]}', '{"v":1}'])
def test_a_record_that_is_not_ours_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a stack record of node b"):
        NodeDigests.from_text("b", text)


def test_the_local_record_changes_only_when_a_stack_does() -> None:
    detector = StuckDetector(5.0)
    detector.observe(0, REDUCE, 10.0)
    first = local_record("a", detector.ranks.values(), 1000.0).to_text()
    detector.observe(0, REDUCE, 11.0)
    assert local_record("a", detector.ranks.values(), 1000.0).to_text() == first
    detector.observe(0, LOAD, 12.0)
    changed = local_record("a", detector.ranks.values(), 1000.0)
    assert changed.ranks[0].since == 1012.0


class FakeBoard:
    """Another node's record, as the store would return it; what this node offered."""

    def __init__(self, others: dict[str, str]) -> None:
        self.node, self.period = "a", 1.0
        self._others = others
        self.offered: list[str] = []

    def offer(self, text: str) -> None:
        self.offered.append(text)

    async def others(self) -> dict[str, str]:
        return self._others

    async def announce(self, round_: int, text: str) -> None:
        self._others["announced"] = f"{round_} {text}"

    def announced(self, round_: int) -> str:
        return ""


def test_the_watch_judges_over_every_nodes_ranks() -> None:
    """This node runs rank 0, waiting in all_reduce; node b's record has rank 1 in load_batch."""

    async def scenario(board: FakeBoard) -> list[Hang]:
        pipes = StackPipes(period=1.0)
        fd = pipes.open(0, 0).fd
        watch = HangWatch(pipes.take(), timeout=5.0, own_files=OWN, board=board)
        found: list[Hang] = []
        clock = FakeClock()
        watch.attach(clock, found.append)
        header, dumps = dumps_of("stall_rank0")
        os.write(fd, header)
        for step in range(8):
            os.write(fd, dumps[step % len(dumps)])
            for _ in range(4):
                await asyncio.sleep(0)
            clock.advance(1.0)
        os.close(fd)
        watch.close()
        return found

    there = node("b", (1, LOAD, FakeClock().wall() - 1.0), (0, LOAD, 0.0))  # b's rank 0: stale
    board = FakeBoard({"b": there.to_text(), "c": "garbage"})
    [hang] = asyncio.run(scenario(board))
    assert hang.verdict.kind is VerdictKind.STALL
    assert hang.culprits() == (1,)
    assert hang.verdict.culprits[0].where == Frame(TRAIN, 33, "load_batch")
    assert NodeDigests.from_text("a", board.offered[-1]).ranks[0].digest.collective == "all_reduce"


@contextlib.asynccontextmanager
async def two_clients() -> AsyncIterator[tuple[StoreClient, StoreClient]]:
    """Two nodes' connections to one real store, all closed at the end."""
    server = StoreServer("127.0.0.1", 0, "run", b"secret")
    await server.start()
    connect = functools.partial(StoreClient.connect, "127.0.0.1", server.port, "run", b"secret")
    clients = (await connect(timeout=5), await connect(timeout=5))
    try:
        yield clients
    finally:
        for client in clients:
            await client.close()
        await server.close()


def test_the_record_is_written_at_most_once_a_period_and_read_by_others() -> None:
    async def scenario() -> None:
        async with two_clients() as clients:
            await board_scenario(*clients)

    async def board_scenario(*clients: StoreClient) -> None:
        clock, owner = FakeClock(), TaskOwner("test", lambda error, task: None)
        lease = await clients[0].lease_grant(30.0)
        mine = StoreStackBoard(clients[0], "a", lease, clock, owner)
        mine.period = 3.0
        theirs = StoreStackBoard(clients[1], "b", 0, clock, owner)
        try:
            for text in ("one", "two", "three"):
                mine.offer(text)
                await asyncio.sleep(0.05)
            assert await theirs.others() == {"a": "one"}  # two and three wait for the period
            assert await mine.others() == {}  # its own record is not another node's
            clock.advance(3.0)
            await asyncio.sleep(0.05)
            assert await theirs.others() == {"a": "three"}
            await clients[0].lease_revoke(lease)
            assert (await clients[1].range(STACKS_PREFIX)).entries == ()
        finally:
            await owner.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_the_announced_hang_reaches_every_nodes_mirror_for_its_round_only() -> None:
    async def scenario() -> tuple[str, str, str]:
        async with two_clients() as clients:
            return await announce_scenario(*clients)

    async def announce_scenario(*clients: StoreClient) -> tuple[str, str, str]:
        clock, owner = FakeClock(), TaskOwner("test", lambda error, task: None)
        mirror = StoreMirror(clients[1], clock, owner)
        await mirror.start()
        lease = await clients[0].lease_grant(30.0)
        culprits = StoreStackBoard(clients[0], "b", lease, clock, owner)
        waiting = StoreStackBoard(clients[1], "a", 0, clock, owner, mirror)
        try:
            before = waiting.announced(3)
            await culprits.announce(3, "rank 1 (local 0) on b hung: stuck 5 s in load_batch")
            for _ in range(100):
                if waiting.announced(3):
                    break
                await asyncio.sleep(0.02)
            return before, waiting.announced(3), waiting.announced(4)
        finally:
            await owner.close()
            await mirror.close()

    before, seen, other_round = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert before == ""
    assert seen == "rank 1 (local 0) on b hung: stuck 5 s in load_batch"
    assert other_round == ""
