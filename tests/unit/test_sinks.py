"""Line sinks: prefixes, filtered copies and the stderr tail, on whole-line batches."""

from __future__ import annotations

from pathlib import Path

from rallypoint.logs.sinks import FilteredFileSink, TailSink, with_prefix


def test_prefix_goes_before_every_line_and_only_newline_ends_a_line() -> None:
    assert with_prefix(b"a\nb\n", b"[r0]:") == b"[r0]:a\n[r0]:b\n"
    assert with_prefix(b"10%\r20%\n", b"[r0]:") == b"[r0]:10%\r20%\n"  # progress bars


def test_tail_keeps_the_last_lines_across_batches() -> None:
    tail = TailSink(3)
    tail.write_lines(b"".join(b"line %d\n" % i for i in range(1000)))
    tail.write_lines(b"last without newline")
    assert list(tail.lines) == ["line 998", "line 999", "last without newline"]
    assert tail.text() == "line 998\nline 999\nlast without newline"


def test_filtered_copy_keeps_matching_lines_with_prefix(tmp_path: Path) -> None:
    path = tmp_path / "filtered.log"
    sink = FilteredFileSink(str(path), ("apple", "pie,"), b"[t1]:")
    sink.write_lines(b"an apple\nno\napple pie, too\n")
    sink.write_lines(b"apple at the end")
    sink.close()
    assert path.read_text() == "[t1]:an apple\n[t1]:apple pie, too\n[t1]:apple at the end\n"


def test_an_empty_filter_matches_every_line(tmp_path: Path) -> None:
    path = tmp_path / "all.log"
    sink = FilteredFileSink(str(path), ("x", ""), b"")
    sink.write_lines(b"one\ntwo\n")
    sink.close()
    assert path.read_text() == "one\ntwo\n"
