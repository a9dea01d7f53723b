"""Log files are written by one thread: the loop never waits for a slow disk, and nothing is lost.

A FIFO without a reader stands in for a stalled filesystem: opening it for
writing blocks until someone reads, as an open on a hung NFS mount would.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from rallypoint.logs.file_writer import LogFiles
from rallypoint.logs.sinks import FileSink


def test_chunks_reach_each_file_in_order_and_drain_waits_for_them(tmp_path: Path) -> None:
    files = LogFiles()
    sinks = [FileSink(str(tmp_path / f"{n}.log"), files) for n in range(3)]
    for i in range(200):
        for n, sink in enumerate(sinks):
            sink.write(f"{n}:{i}\n".encode())
    for sink in sinks:
        sink.close()
    files.drain()
    for n in range(3):
        expected = "".join(f"{n}:{i}\n" for i in range(200))
        assert (tmp_path / f"{n}.log").read_text() == expected


def test_a_file_is_made_at_once_even_if_nothing_is_written(tmp_path: Path) -> None:
    files = LogFiles()
    FileSink(str(tmp_path / "quiet.log"), files).close()
    files.drain()
    assert (tmp_path / "quiet.log").read_bytes() == b""


def test_a_stalled_file_never_stalls_the_loop(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled.log"
    os.mkfifo(fifo)
    files = LogFiles()

    async def loop_side() -> float:
        sink = FileSink(str(fifo), files)  # its open blocks, on the writer thread
        worst, last = 0.0, time.monotonic()
        for i in range(50):
            sink.write(b"line %d\n" % i)
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last), now
        sink.close()
        return worst

    worst = asyncio.run(loop_side())
    assert worst < 1.0  # the loop went on while the file could not even be opened
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    files.drain()  # returns once the reader took everything
    reader.join(timeout=30)
    assert got == [b"".join(b"line %d\n" % i for i in range(50))]


def test_the_loop_waits_only_beyond_the_queue_bound(tmp_path: Path) -> None:
    fifo = tmp_path / "slow.log"
    os.mkfifo(fifo)
    files = LogFiles(queued_max=1000)
    sink = FileSink(str(fifo), files)
    sink.write(b"x" * 900)  # under the bound: queued at once
    sink.write(b"y" * 900)  # now over it: the next one must wait for the disk
    waited = threading.Event()

    def third() -> None:
        sink.write(b"z" * 10)
        waited.set()

    writer = threading.Thread(target=third)
    writer.start()
    assert not waited.wait(0.3)  # held back: nothing was written yet
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert waited.wait(30)
    sink.close()
    files.drain()
    reader.join(timeout=30)
    assert got == [b"x" * 900 + b"y" * 900 + b"z" * 10]


def test_a_file_that_cannot_be_opened_is_said_once_and_the_rest_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = LogFiles()
    bad = FileSink(str(tmp_path / "no_such_folder" / "x.log"), files)
    good = FileSink(str(tmp_path / "ok.log"), files)
    for _ in range(3):
        bad.write(b"lost\n")
        good.write(b"kept\n")
    bad.close()
    good.close()
    files.drain()
    assert (tmp_path / "ok.log").read_text() == "kept\n" * 3
    said = [r.getMessage() for r in caplog.records if "no_such_folder" in r.getMessage()]
    assert len(said) == 1
    assert "its later output is not written" in said[0]
