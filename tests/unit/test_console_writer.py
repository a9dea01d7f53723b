"""The console: bounded, never blocking, back-pressure to the pumps, nothing lost, lines whole."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Iterator

import pytest

from rallypoint.logs.framing import LineMux, OutBuffer
from rallypoint.logs.pump import PipePump, pump_stream
from rallypoint.logs.sinks import ConsoleSink, Stream
from rallypoint.logs.writer import Consoles, ConsoleWriter, LogStream, write_all


class RecordingValve:
    """A fake pump: counts the pauses and resumes it is given."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def pause(self) -> None:
        self.events.append("pause")

    def resume(self) -> None:
        self.events.append("resume")


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


async def read_while(fd: int, work: Awaitable[object]) -> bytes:
    """Read ``fd`` on the loop until ``work`` is done; return all that came."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    got: list[bytes] = []

    def ready() -> None:
        with contextlib.suppress(BlockingIOError):
            got.append(os.read(fd, 1 << 16))

    loop.add_reader(fd, ready)
    try:
        await work
    finally:
        loop.remove_reader(fd)
    return b"".join(got) + read_available(fd)


def test_buffer_is_full_past_high_and_drains_at_low() -> None:
    buffer = OutBuffer(high=10, low=4)
    assert not buffer.push(b"x" * 10)  # at the mark, not past it
    assert buffer.push(b"y")
    assert not buffer.push(b"z")  # already full: said once
    assert not buffer.consumed(7)  # 5 left, above low
    assert buffer.consumed(1)
    assert bytes(buffer.data) == b"xxyz"
    with pytest.raises(ValueError, match="low <= high"):
        OutBuffer(high=1, low=2)


def test_mux_ends_another_sources_open_line_and_prefixes_lines() -> None:
    mux = LineMux()
    a, b = object(), object()
    assert mux.frame(a, b"\r 10%", b"[0]:") == b"[0]:\r 10%"
    assert mux.frame(a, b"\r 20%", b"[0]:") == b"\r 20%"  # same line goes on, no prefix
    assert mux.frame(b, b"warn\nmore\n", b"[1]:") == b"\n[1]:warn\n[1]:more\n"
    assert mux.frame(a, b"\r 30%\ndone\n", b"[0]:") == b"[0]:\r 30%\n[0]:done\n"
    assert mux.end(a) == b""
    assert mux.frame(b, b"(Pdb) ", b"") == b"(Pdb) "
    assert mux.end(b) == b"\n"


def test_writer_leaves_the_launchers_fd_blocking(pipe: tuple[int, int]) -> None:
    _, write_fd = pipe
    writer = ConsoleWriter(write_fd)
    assert writer.nonblocking
    assert writer.fd != write_fd
    assert os.get_blocking(write_fd)  # the shell's and the workers' description is untouched
    writer.close()


def test_full_console_pauses_its_feeders_loses_nothing_and_never_blocks(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    chunks = [b"%06d " % i + b"x" * 1000 + b"\n" for i in range(2000)]  # 2 MB, pipe holds 64 KiB

    async def scenario() -> tuple[list[str], int, int]:
        writer = ConsoleWriter(write_fd, OutBuffer(high=200_000, low=50_000))
        valve = RecordingValve()
        writer.subscribe(valve)
        ticks = 0

        async def ticker() -> None:  # stands for the lease keep-alive
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        tick_task = asyncio.ensure_future(ticker())
        for chunk in chunks:
            writer.send(valve, chunk)
            if valve.events == ["pause"]:
                break
        paused_at = writer.pending
        await asyncio.sleep(0.05)  # nobody reads: the loop must still run
        assert writer.pending == paused_at  # held, not dropped, not spun on
        ticks_while_full = ticks
        received = read_available(read_fd)
        sent = len(received)
        total = received + await read_while(read_fd, writer.drained())
        tick_task.cancel()
        writer.close()
        assert total == b"".join(chunks[: len(total.splitlines())])
        return valve.events, ticks_while_full, sent

    events, ticks, sent = asyncio.run(scenario())
    assert events == ["pause", "resume"]
    assert ticks > 10, "the loop was blocked while the console was full"
    assert sent > 0


def test_a_gone_reader_drops_output_and_unblocks(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    writer = ConsoleWriter(write_fd)
    writer.send(object(), b"nobody reads this\n")
    assert writer.pending == 0
    write_all(write_fd, b"nor this\n")  # no BrokenPipeError, no hang
    writer.close()


def test_pump_pauses_reading_and_the_worker_pipe_fills_then_all_arrives() -> None:
    worker_read, worker_write = os.pipe()
    console_read, console_write = os.pipe()
    lines = [b"line %05d of the worker\n" % i for i in range(20_000)]  # ~500 KB
    data = b"".join(lines)

    async def scenario() -> bytes:
        writer = ConsoleWriter(console_write, OutBuffer(high=100_000, low=10_000))
        pump = await pump_stream(Stream(worker_read, (ConsoleSink(writer),)))
        os.set_blocking(worker_write, False)
        view, stalled = memoryview(data), 0
        while view and stalled < 20:  # the worker writes until the kernel makes it wait
            try:
                view = view[os.write(worker_write, view[:4096]) :]
                stalled = 0
            except BlockingIOError:
                stalled += 1
            await asyncio.sleep(0.001)
        assert pump.paused, "the pump kept reading into a full console"
        assert view, "the worker was never made to wait"
        os.set_blocking(worker_write, True)

        async def rest_of_the_run() -> None:
            await asyncio.to_thread(write_all, worker_write, bytes(view))
            os.close(worker_write)
            await pump.finished
            await writer.drained()

        got = await read_while(console_read, rest_of_the_run())
        writer.close()
        return got

    try:
        assert asyncio.run(scenario()) == data
    finally:
        os.close(console_read)
        os.close(console_write)


def test_unfinished_line_goes_out_once_the_stream_is_quiet() -> None:
    async def scenario() -> list[tuple[float, bytes]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, bytes]] = []

        class Recorder:
            def write(self, data: bytes) -> None:
                seen.append((loop.time(), data))

            def close(self) -> None:
                pass

        pump = PipePump(Stream(-1, (Recorder(),)), hold=0.02)
        start = loop.time()
        pump.data_received(b"hel")
        pump.data_received(b"lo\n")  # a print() split in two writes: one line
        pump.data_received(b"\r 10%")
        await asyncio.sleep(0.1)
        pump.data_received(b"\r 20%")
        await asyncio.sleep(0.1)
        pump.connection_lost(None)
        return [(t - start, d) for t, d in seen]

    seen = asyncio.run(scenario())
    assert [d for _, d in seen] == [b"hello\n", b"\r 10%", b"\r 20%"]
    assert seen[1][0] < 0.09
    assert seen[2][0] < 0.19


def test_agent_log_lines_queue_behind_worker_output_and_end_its_open_line(
    pipe: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    read_fd, write_fd = pipe
    fill = b"y" * 200_000 + b"\n"  # more than the pipe holds

    async def scenario() -> tuple[bytes, int]:
        consoles = Consoles()
        writer = consoles.writer(write_fd)
        writer.send("worker", fill + b"50%")  # ends with an unfinished line
        LogStream(write_fd).write("[rallypoint] WARNING restarting\n")  # must not block
        queued = writer.pending
        got = await read_while(read_fd, consoles.drained())
        consoles.close()
        return got, queued

    got, queued = asyncio.run(scenario())
    assert got == fill + b"50%\n[rallypoint] WARNING restarting\n"
    assert queued > len(fill) - (1 << 16)
    LogStream(write_fd).write("no loop, no live console: the usual stream\n")
    assert capsys.readouterr().out == "no loop, no live console: the usual stream\n"


def test_a_gone_console_does_not_loop_through_its_own_debug_line(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    handler = logging.StreamHandler(LogStream(write_fd))
    writer_log = logging.getLogger("rallypoint.logs.writer")
    writer_log.addHandler(handler)
    writer_log.setLevel(logging.DEBUG)

    async def scenario() -> None:
        consoles = Consoles()
        consoles.writer(write_fd).send(object(), b"to nobody\n")  # EPIPE, then a debug line
        consoles.close()

    try:
        asyncio.run(scenario())
    finally:
        writer_log.removeHandler(handler)
        writer_log.setLevel(logging.NOTSET)
