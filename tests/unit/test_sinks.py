"""Line sinks: prefixes, filtered copies and the stderr tail, on chunks that may cut lines."""

from __future__ import annotations

from pathlib import Path

from rallypoint.logs.file_writer import LOG_FILES
from rallypoint.logs.framing import with_prefix
from rallypoint.logs.sinks import FilteredFileSink, TailSink


def test_prefix_goes_before_every_line_and_only_newline_ends_a_line() -> None:
    assert with_prefix(b"a\nb\n", b"[r0]:") == b"[r0]:a\n[r0]:b\n"
    assert with_prefix(b"10%\r20%\n", b"[r0]:") == b"[r0]:10%\r20%\n"  # progress bars


def test_tail_keeps_the_last_lines_across_batches() -> None:
    tail = TailSink(3)
    tail.write(b"".join(b"line %d\n" % i for i in range(1000)))
    tail.write(b"last without newline")
    assert tail.text() == "line 998\nline 999\nlast without newline"
    tail.write(b" (ended later)\n")
    assert list(tail.lines) == ["line 998", "line 999", "last without newline (ended later)"]


def test_tail_counts_a_last_line_without_newline_when_closed() -> None:
    tail = TailSink(2)
    tail.write(b"a\nb\nc")
    tail.close()
    assert list(tail.lines) == ["b", "c"]


def test_filtered_copy_keeps_matching_lines_with_prefix(tmp_path: Path) -> None:
    path = tmp_path / "filtered.log"
    sink = FilteredFileSink(str(path), ("apple", "pie,"), b"[t1]:")
    sink.write(b"an apple\nno\napple ")
    sink.write(b"pie, too\n")
    sink.write(b"apple at the end")
    sink.close()
    LOG_FILES.drain()
    assert path.read_text() == "[t1]:an apple\n[t1]:apple pie, too\n[t1]:apple at the end\n"


def test_an_empty_filter_matches_every_line(tmp_path: Path) -> None:
    path = tmp_path / "all.log"
    sink = FilteredFileSink(str(path), ("x", ""), b"")
    sink.write(b"one\ntwo\n")
    sink.close()
    LOG_FILES.drain()
    assert path.read_text() == "one\ntwo\n"
