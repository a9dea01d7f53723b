"""The elastic timers' deadline table (pure) and its pipe reader (a real FIFO, a fake clock)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from rallypoint.health.file_timer import DeadlineTable, Expiry, TimerRequest, parse_request
from rallypoint.health.timer_pipe import TimerPipe, timer_file
from tests.fakes import FakeClock


def line(pid: int, scope: str, deadline: float, sig: int = 9) -> bytes:
    """What torch's FileTimerRequest.to_json writes, plus the newline its client adds."""
    request = {
        "version": 1,
        "pid": pid,
        "scope_id": scope,
        "expiration_time": deadline,
        "signal": sig,
    }
    return json.dumps(request).encode() + b"\n"


def test_a_request_line_parses() -> None:
    assert parse_request(line(7, "a.py#3", 12.5)) == TimerRequest(7, "a.py#3", 12.5, 9)
    assert parse_request(line(7, "a.py#3", -1, 0)).releases


@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b'{"pid": 1}', b'{"pid": "x", "scope_id": 1}'])
def test_garbage_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="not a timer request"):
        parse_request(bad)


def test_the_next_deadline_follows_acquires_and_releases() -> None:
    table = DeadlineTable()
    assert table.next_deadline() is None
    table.apply(TimerRequest(1, "a", 20.0, 9))
    table.apply(TimerRequest(2, "b", 10.0, 9))
    assert table.next_deadline() == 10.0
    table.apply(TimerRequest(2, "b", -1.0))
    assert table.next_deadline() == 20.0
    table.apply(TimerRequest(1, "a", 30.0, 9))  # acquired again: replaced
    assert table.next_deadline() == 30.0


def test_nothing_expires_before_its_deadline() -> None:
    table = DeadlineTable()
    table.apply(TimerRequest(1, "a", 10.0, 9))
    assert table.expire(9.999) == []
    assert table.expire(10.0) == [Expiry(1, "a", 9, 10.0, 10.0)]
    assert len(table) == 0


def test_one_expiry_per_pid_the_earliest_that_asked_for_a_signal() -> None:
    table = DeadlineTable()
    table.apply(TimerRequest(1, "quiet", 5.0, 0))
    table.apply(TimerRequest(1, "loud", 6.0, 15))
    table.apply(TimerRequest(1, "later", 7.0, 9))
    table.apply(TimerRequest(2, "only", 8.0, 0))
    table.apply(TimerRequest(3, "future", 99.0, 9))
    expiries = {e.pid: e for e in table.expire(8.5)}
    assert expiries[1] == Expiry(1, "loud", 15, 6.0, 8.5)
    assert expiries[1].overdue == pytest.approx(2.5)
    assert expiries[2].signal == 0  # asked for none: reported, not killed
    assert set(expiries) == {1, 2}
    assert table.next_deadline() == 99.0


def test_an_ended_process_is_forgotten() -> None:
    table = DeadlineTable()
    table.apply(TimerRequest(1, "a", 10.0, 9))
    table.apply(TimerRequest(2, "a", 11.0, 9))
    table.forget(1)
    assert table.next_deadline() == 11.0


def test_the_pipe_is_where_the_launcher_says_or_fresh(tmp_path: Path) -> None:
    assert timer_file({}, str(tmp_path)) is None
    assert timer_file({"TORCHELASTIC_ENABLE_FILE_TIMER": "0"}, str(tmp_path)) is None
    given = {"TORCHELASTIC_ENABLE_FILE_TIMER": "1", "TORCHELASTIC_TIMER_FILE": "/x/p"}
    assert timer_file(given, str(tmp_path)) == "/x/p"
    made = timer_file({"TORCHELASTIC_ENABLE_FILE_TIMER": "1"}, str(tmp_path))
    assert made is not None
    assert made.startswith(f"{tmp_path}/watchdog_timer_")


def send(path: str, data: bytes) -> None:
    """As torch's client: open without blocking (fails if no reader), write, close."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_the_reader_reports_what_expired_and_removes_the_pipe(tmp_path: Path) -> None:
    path = str(tmp_path / "timer")
    clock = FakeClock()
    now = clock.wall()
    seen: list[Expiry] = []
    pipe = TimerPipe(path)
    send(path, line(5, "early", now - 10))  # written before the loop reads: kept by the kernel

    async def scenario() -> None:
        pipe.attach(clock, seen.append)
        record = line(6, "split", now - 5, int(signal.SIGTERM))
        send(path, b"not json\n" + record[:10])
        send(path, record[10:])
        send(path, line(7, "released", now - 1) + line(7, "released", -1, 0))
        send(path, line(8, "future", now + 0.5))
        await settle()

    asyncio.run(scenario())
    assert [(e.pid, e.scope, e.signal) for e in seen] == [(5, "early", 9), (6, "split", 15)]
    assert seen[0].overdue == pytest.approx(10.0)
    pipe.close()
    pipe.close()
    assert not os.path.exists(path)


def test_the_reader_wakes_at_the_next_deadline_of_its_clock(tmp_path: Path) -> None:
    path = str(tmp_path / "timer")
    clock = FakeClock()
    seen: list[Expiry] = []
    pipe = TimerPipe(path)

    async def scenario() -> None:
        pipe.attach(clock, seen.append)
        send(path, line(9, "soon", clock.wall() + 30))
        send(path, line(10, "later", clock.wall() + 60))
        await settle()
        clock.advance(29.9)
        await settle()
        assert seen == []
        clock.advance(0.2)
        await settle()
        assert [e.scope for e in seen] == ["soon"]
        assert seen[0].overdue == pytest.approx(0.1)
        clock.advance(30)
        await settle()

    asyncio.run(scenario())
    pipe.close()
    assert [e.scope for e in seen] == ["soon", "later"]


async def settle() -> None:
    """Let the loop read the pipe and run what is ready (no time passes on the fake clock)."""
    for _ in range(20):
        await asyncio.sleep(0.005)
