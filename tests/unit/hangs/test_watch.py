"""The stack channels' reader: real pipes carrying recorded dumps, a fake clock."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rallypoint.hangs.verdict import VerdictKind
from rallypoint.hangs.watch import Hang, HangWatch
from rallypoint.workers.stack_pipes import StackPipes
from tests.fakes import FakeClock
from tests.unit.hangs.test_stacks import DUMPS, OWN


def dumps_of(name: str) -> tuple[bytes, list[bytes]]:
    """The recording's header line and its dumps, each as written."""
    header, _, rest = (DUMPS / f"{name}.txt").read_bytes().partition(b"\n")
    return header + b"\n", [b"Timeout (" + part for part in rest.split(b"Timeout (")[1:]]


async def feed(watch: HangWatch, ends: dict[int, int], clock: FakeClock, steps: int) -> None:
    recordings = {0: dumps_of("stall_rank0"), 1: dumps_of("stall_rank1")}
    for local, (header, _) in recordings.items():
        os.write(ends[local], header)
    for step in range(steps):
        for local, (_, dumps) in recordings.items():
            os.write(ends[local], dumps[step % len(dumps)])
        await asyncio.sleep(0)  # the loop reads the pipes
        await asyncio.sleep(0)
        clock.advance(1.0)


def test_a_stall_is_reported_once_with_its_verdict() -> None:
    async def scenario() -> list[Hang]:
        pipes = StackPipes(period=1.0)
        ends = {local: pipes.open(local, local).fd for local in (0, 1)}
        watch = HangWatch(pipes.take(), timeout=5.0, own_files=OWN)
        found: list[Hang] = []
        clock = FakeClock()
        watch.attach(clock, found.append)
        await feed(watch, ends, clock, steps=10)
        for fd in ends.values():
            os.close(fd)
        watch.close()
        return found

    found = asyncio.run(scenario())
    assert len(found) == 1  # 10 identical samples: one hang, reported once
    hang = found[0]
    assert hang.verdict.kind is VerdictKind.STALL
    assert hang.culprits() == (1,)
    assert hang.stacks[1].frames[0].function == "load_batch"


def test_too_short_to_be_stuck_and_crash_stacks_are_kept(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Hang], str]:
        pipes = StackPipes(period=1.0)
        ends = {local: pipes.open(local, local).fd for local in (0, 1, 2)}
        watch = HangWatch(pipes.take(), timeout=20.0, own_files=OWN)
        found: list[Hang] = []
        clock = FakeClock()
        watch.attach(clock, found.append)
        await feed(watch, ends, clock, steps=8)
        os.write(ends[2], (DUMPS / "segv.txt").read_bytes())
        os.close(ends[2])
        crash = watch.crash_stack(2)
        watch.close()
        for local in (0, 1):
            os.close(ends[local])
        assert crash is not None
        assert crash.crashed is not None
        return found, crash.crashed.frames[1].function

    found, crashed_in = asyncio.run(scenario())
    assert found == []
    assert crashed_in == "deref_null"


def test_samples_read_after_a_workers_exit_do_not_make_it_stuck() -> None:
    async def scenario() -> list[Hang]:
        pipes = StackPipes(period=1.0)
        ends = {local: pipes.open(local, local).fd for local in (0, 1)}
        watch = HangWatch(pipes.take(), timeout=5.0, own_files=OWN)
        found: list[Hang] = []
        clock = FakeClock()
        watch.attach(clock, found.append)
        watch.forget(0)  # rank 0 exited; its last samples are still on their way
        watch.forget(1)
        await feed(watch, ends, clock, steps=10)
        for fd in ends.values():
            os.close(fd)
        watch.close()
        return found

    assert asyncio.run(scenario()) == []


def test_without_a_hang_timeout_a_hang_is_reported_after_five_minutes() -> None:
    async def scenario(steps: int) -> list[Hang]:
        pipes = StackPipes(period=1.0)
        ends = {local: pipes.open(local, local).fd for local in (0, 1)}
        watch = HangWatch(pipes.take(), timeout=None, own_files=OWN)
        found: list[Hang] = []
        clock = FakeClock()
        watch.attach(clock, found.append)
        await feed(watch, ends, clock, steps=steps)
        for fd in ends.values():
            os.close(fd)
        watch.close()
        return found

    assert asyncio.run(scenario(300)) == []  # 299 s of identical samples
    assert len(asyncio.run(scenario(302))) == 1
