"""One attempt's stack channels, read on the agent's loop: samples in, hangs and crash stacks out.

Design note: each Python worker gets the write end of its own pipe (see
:mod:`rallypoint.workers.bootstrap`); the agent keeps the read ends, made
non-blocking and read with ``add_reader`` as data comes, so nothing polls and
nothing here can block the loop. Each pipe feeds a :class:`DumpParser`;
samples feed one :class:`StuckDetector` for the node's ranks, timed by the
injected clock. When a rank becomes stuck, :class:`HangWatch` judges every
local rank's latest stack and calls ``on_hang`` once for that hang (a new one
can begin once every rank of the last report has moved on). A fatal dump is kept for the
summary; :meth:`HangWatch.crash_stack` first reads what the dead worker left
in its pipe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rallypoint.hangs.board import NodeDigests, judge_job, local_record
from rallypoint.hangs.detector import RankStack, StuckDetector
from rallypoint.hangs.digest import digest
from rallypoint.hangs.dump import Dump, DumpKind, DumpParser, ThreadStack
from rallypoint.hangs.verdict import Verdict, judge

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping

    from rallypoint.clock import Clock
    from rallypoint.hangs.board import StackBoard

logger = logging.getLogger(__name__)

READ_SIZE = 1 << 16
REPORT_ONLY_TIMEOUT = 300.0  # without --hang-timeout, a hang is reported after this


@dataclass(frozen=True, slots=True)
class Hang:
    """A hang found on this node: the verdict, and every rank's latest state and stack."""

    verdict: Verdict
    ranks: tuple[RankStack, ...]
    stacks: dict[int, ThreadStack]  # global rank -> its main thread's latest stack
    timeout: float

    def culprits(self) -> tuple[int, ...]:
        """The verdict's culprits; when it names none, the ranks stuck the longest."""
        named = tuple(r for group in self.verdict.culprits for r in group.ranks)
        return named or tuple(r.rank for r in self.ranks if r.unchanged_for >= self.timeout)


@dataclass(slots=True)
class _Channel:
    rank: int  # global
    fd: int
    parser: DumpParser
    latest: ThreadStack | None = None
    fatal: Dump | None = None
    exited: bool = False  # samples still in the pipe after the exit no longer count


class HangWatch:
    """Reads every local worker's stack channel and reports hangs."""

    def __init__(
        self,
        read_ends: Mapping[int, tuple[int, int]],
        timeout: float | None,
        own_files: frozenset[str],
        board: StackBoard | None = None,
    ) -> None:
        """Take over ``read_ends`` (local rank -> (global rank, fd)); ``own_files``: the
        bootstrap's, whose frames are dropped; ``board``: the other nodes' digests, if any."""
        self.timeout = timeout or REPORT_ONLY_TIMEOUT
        self._detector = StuckDetector(self.timeout)
        self._channels = {
            local: _Channel(rank, fd, DumpParser(own_files))
            for local, (rank, fd) in read_ends.items()
        }
        self._reported: set[tuple[int, float]] = set()  # (rank, since) already reported
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Clock | None = None
        self._on_hang: Callable[[Hang], None] = lambda _hang: None
        self._board = board
        self._wall_offset = 0.0  # wall minus monotonic time, fixed at attach
        self._judging: asyncio.Task[None] | None = None

    def attach(self, clock: Clock, on_hang: Callable[[Hang], None]) -> None:
        """Start reading on the running loop; ``on_hang`` is called once per hang."""
        import asyncio  # loaded by then: we run on its loop

        self._loop, self._clock, self._on_hang = asyncio.get_running_loop(), clock, on_hang
        self._wall_offset = clock.wall() - clock.monotonic()
        for channel in self._channels.values():
            self._loop.add_reader(channel.fd, self._read, channel)
            self._read(channel)  # what workers wrote before the loop existed

    def _read(self, channel: _Channel) -> None:
        ended = False
        while True:
            try:
                data = os.read(channel.fd, READ_SIZE)
            except (BlockingIOError, OSError):
                break
            if not data:
                ended = True
                break
            self._take(channel, channel.parser.feed(data))
        if ended:
            self._take(channel, channel.parser.finish())
            self._stop_reading(channel)

    def _take(self, channel: _Channel, dumps: list[Dump]) -> None:
        for dump in dumps:
            if dump.kind is DumpKind.FATAL:
                channel.fatal = dump
            elif (main := dump.main) is not None and self._clock and not channel.exited:
                channel.latest = main
                self._detector.observe(channel.rank, digest(main), self._clock.monotonic())
        if dumps:
            self._publish()
            self._check()

    def _record(self) -> NodeDigests:
        node = self._board.node if self._board is not None else ""
        return local_record(node, self._detector.ranks.values(), self._wall_offset)

    def _publish(self) -> None:
        if self._board is not None:
            self._board.offer(self._record().to_text())

    def _check(self) -> None:
        stuck = self._detector.stuck()
        if not stuck or self._still_reported() or self._judging is not None:
            return
        self._reported = {(r.rank, r.since) for r in stuck}
        if self._board is None or self._loop is None:
            ranks = tuple(sorted(self._detector.ranks.values(), key=lambda r: r.rank))
            self._report(judge(ranks, stuck), ranks)
            return
        self._judging = self._loop.create_task(self._judge_job(self._board))

    async def _judge_job(self, board: StackBoard) -> None:
        """The verdict over every node's ranks: this node's, then the records of the others."""
        try:
            nodes = [self._record()]
            for node, text in sorted((await board.others()).items()):
                try:
                    nodes.append(NodeDigests.from_text(node, text))
                except ValueError as exc:
                    logger.warning("%s", exc)
            assert self._clock is not None
            self._report(*judge_job(nodes, self._clock.wall(), self.timeout))
        finally:
            self._judging = None

    def _report(self, verdict: Verdict, ranks: tuple[RankStack, ...]) -> None:
        stacks = {c.rank: c.latest for c in self._channels.values() if c.latest is not None}
        self._on_hang(Hang(verdict, ranks, stacks, self.timeout))

    def _still_reported(self) -> bool:
        """Whether a rank of the last report is still in the same stretch (the same hang)."""
        ranks = self._detector.ranks
        return any(rank in ranks and ranks[rank].since == since for rank, since in self._reported)

    def forget(self, local_rank: int) -> None:
        """The worker ended: its stack no longer counts."""
        channel = self._channels.get(local_rank)
        if channel is not None:
            channel.exited = True
            self._detector.forget(channel.rank)

    def unchanged_for(self, local_rank: int) -> float | None:
        """Seconds the worker's stack has been the same (None before its first sample)."""
        channel = self._channels.get(local_rank)
        state = self._detector.ranks.get(channel.rank) if channel else None
        return state.unchanged_for if state else None

    def latest_stack(self, local_rank: int) -> ThreadStack | None:
        """The main thread's stack in the worker's latest sample."""
        channel = self._channels.get(local_rank)
        return channel.latest if channel else None

    def crash_stack(self, local_rank: int) -> Dump | None:
        """The fatal dump the worker wrote as it died, if it did (its pipe read to the end)."""
        channel = self._channels.get(local_rank)
        if channel is None:
            return None
        if channel.fd >= 0:
            self._read(channel)
        return channel.fatal

    def _stop_reading(self, channel: _Channel) -> None:
        if channel.fd < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(channel.fd)
        os.close(channel.fd)
        channel.fd = -1

    def close(self) -> None:
        """Read what is left, then let go of every pipe."""
        if self._judging is not None:
            self._judging.cancel()
        for channel in self._channels.values():
            if channel.fd >= 0:
                self._read(channel)
                self._stop_reading(channel)
