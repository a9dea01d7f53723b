"""faulthandler dumps parsed, digested, judged: recorded real dumps and fake clocks.

The recordings in ``dumps/`` are what the worker bootstrap's channel carried
for two gloo ranks of ``tests/workers/gloo_hang.py`` (``stall``: rank 1 in
``load_batch``, rank 0 in ``all_reduce``; ``mismatch``: rank 0 in
``all_reduce``, rank 1 in ``broadcast``) and for a worker that dereferenced a
null pointer (``segv``), with the checkout's path replaced by ``/repo``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rallypoint.hangs.detector import RankStack, StuckDetector
from rallypoint.hangs.digest import StackDigest, digest
from rallypoint.hangs.dump import Dump, DumpKind, DumpParser, Frame, ThreadStack
from rallypoint.hangs.verdict import VerdictKind, judge

DUMPS = Path(__file__).parent / "dumps"
OWN = frozenset(
    {"/repo/src/rallypoint/workers/bootstrap.py", "/repo/src/rallypoint/workers/_bootstrap.py"}
)
SCRIPT = "/repo/tests/workers/gloo_hang.py"


def recorded(name: str, chunk: int = 0) -> list[Dump]:
    data = (DUMPS / f"{name}.txt").read_bytes()
    parser = DumpParser(OWN)
    if not chunk:
        return parser.feed(data) + parser.finish()
    dumps: list[Dump] = []
    for start in range(0, len(data), chunk):
        dumps += parser.feed(data[start : start + chunk])
    return dumps + parser.finish()


def main_digest(name: str) -> StackDigest:
    main = recorded(name)[-1].main
    assert main is not None
    return digest(main)


# --- parser ----------------------------------------------------------------------------


def test_samples_of_a_rank_waiting_in_all_reduce() -> None:
    dumps = recorded("stall_rank0")
    assert len(dumps) == 6
    assert {d.kind for d in dumps} == {DumpKind.SAMPLE}
    main = dumps[-1].main
    assert main is not None
    assert [f.function for f in main.frames] == [
        "all_reduce",
        "wrapper",
        "step",
        "main",
        "<module>",
    ]
    assert main.frames[2] == Frame(SCRIPT, 35, "step")
    assert all(f.file not in OWN for f in main.frames)  # the bootstrap's frames are dropped


def test_any_cut_of_the_bytes_gives_the_same_dumps() -> None:
    whole = recorded("stall_rank1")
    for chunk in (1, 7, 100, 4096):
        assert recorded("stall_rank1", chunk) == whole


def test_a_dump_is_whole_at_the_main_threads_last_frame() -> None:
    data = (DUMPS / "stall_rank1.txt").read_bytes()
    parser = DumpParser(OWN)
    second = data.index(b"Timeout (", data.index(b"Timeout (") + 1)
    first = parser.feed(data[:second])  # one whole dump, and no next header yet
    assert len(first) == 1
    assert parser.main_thread == first[0].main_thread
    assert parser.pid == 14887


def test_without_the_bootstrap_a_dump_ends_at_the_next_or_the_end() -> None:
    dumps = DumpParser().feed((DUMPS / "mismatch_rank1.txt").read_bytes())
    assert len(dumps) == 5  # the sixth is still open
    assert dumps[0].main is not None  # the last thread listed


def test_fatal_dump_names_the_crashing_thread() -> None:
    [dump] = recorded("segv")
    assert dump.kind is DumpKind.FATAL
    assert dump.reason == "Segmentation fault"
    main = dump.main
    assert main is not None
    assert main.current
    assert [f.function for f in main.frames] == ["string_at", "deref_null", "<module>"]
    assert len(dump.threads) == 2


def test_a_dump_cut_short_or_garbled_is_skipped_line_by_line() -> None:
    data = (DUMPS / "stall_rank0.txt").read_bytes()
    cut = data[: data.index(b'line 35 in step"') if b'line 35 in step"' in data else 900]
    garbage = b'\x00\xffnot a dump line\n  File "x.py", line ??? in f\n'
    dumps = DumpParser(OWN).feed(cut + b"\n" + garbage + data)
    assert dumps[-1].main is not None
    assert dumps[-1].main.frames[0].function == "all_reduce"


# --- digest ----------------------------------------------------------------------------


def test_digest_of_a_collective_names_it_and_its_call_site() -> None:
    waiting = main_digest("stall_rank0")
    assert waiting.collective == "all_reduce"
    assert waiting.call_site == Frame(SCRIPT, 35, "step")
    stalled = main_digest("stall_rank1")
    assert stalled.collective is None
    assert stalled.where is not None
    assert stalled.where.function == "load_batch"
    assert main_digest("mismatch_rank1").collective == "broadcast"


def test_digest_keys_compare_whole_stacks() -> None:
    dumps = recorded("stall_rank0")
    keys = {digest(d.main).key for d in dumps if d.main is not None}
    assert len(keys) == 1  # a rank blocked in all_reduce: every sample the same
    moved = ThreadStack(1, False, (Frame(SCRIPT, 36, "step"),))
    assert digest(moved).key != digest(ThreadStack(1, False, (Frame(SCRIPT, 35, "step"),))).key


def test_digest_json_is_small_and_round_trips() -> None:
    import json

    for name in ("stall_rank0", "stall_rank1", "mismatch_rank1"):
        value = main_digest(name)
        text = json.dumps(value.to_json(), separators=(",", ":"))
        assert len(text) < 300, text
        assert StackDigest.from_json(json.loads(text)) == value


# --- detector --------------------------------------------------------------------------


def _digest(key: str, function: str = "f", collective: str | None = None) -> StackDigest:
    return StackDigest(key, Frame("x.py", 1, function), collective)


def test_stuck_after_timeout_of_identical_samples() -> None:
    detector = StuckDetector(timeout=5.0)
    for t in (0.0, 2.0, 4.0):
        detector.observe(0, _digest("a"), t)
    assert detector.stuck() == []
    detector.observe(0, _digest("a"), 5.0)
    assert [r.rank for r in detector.stuck()] == [0]
    assert detector.stuck()[0].unchanged_for == 5.0


def test_any_change_starts_over() -> None:
    detector = StuckDetector(timeout=5.0)
    for t, key in [(0.0, "a"), (3.0, "b"), (6.0, "b"), (7.0, "a"), (11.0, "a")]:
        detector.observe(1, _digest(key), t)
    assert detector.stuck() == []  # "a" again at 7 s is a new stretch: 4 s only
    detector.observe(1, _digest("a"), 12.0)
    assert [r.since for r in detector.stuck()] == [7.0]


def test_silence_is_not_evidence() -> None:
    detector = StuckDetector(timeout=5.0)
    detector.observe(0, _digest("a"), 0.0)  # then no sample for a long time
    assert detector.stuck() == []


def test_a_long_call_shorter_than_the_timeout_is_not_stuck() -> None:
    detector = StuckDetector(timeout=20.0)
    for t in range(0, 9):  # one C call of 8 s, sampled every second
        detector.observe(0, _digest("sleep"), float(t))
    detector.observe(0, _digest("after"), 9.0)
    assert detector.stuck() == []


def test_forget_and_bad_timeout() -> None:
    detector = StuckDetector(timeout=1.0)
    detector.observe(0, _digest("a"), 0.0)
    detector.observe(0, _digest("a"), 2.0)
    detector.forget(0)
    assert detector.stuck() == []
    with pytest.raises(ValueError, match="positive"):
        StuckDetector(timeout=0)


# --- verdict ---------------------------------------------------------------------------


def _rank(rank: int, value: StackDigest, since: float = 0.0, seen: float = 10.0) -> RankStack:
    return RankStack(rank, value, since, seen)


def test_recorded_stall_names_rank_1_in_load_batch() -> None:
    ranks = [_rank(0, main_digest("stall_rank0")), _rank(1, main_digest("stall_rank1"))]
    verdict = judge(ranks, ranks)
    assert verdict.kind is VerdictKind.STALL
    [culprit] = verdict.culprits
    assert culprit.ranks == (1,)
    assert culprit.where is not None
    assert culprit.where.function == "load_batch"
    [waiting] = verdict.waiting
    assert (waiting.ranks, waiting.collective) == ((0,), "all_reduce")
    assert waiting.where == Frame(SCRIPT, 35, "step")


def test_recorded_mismatch_names_both_collectives() -> None:
    ranks = [_rank(0, main_digest("mismatch_rank0")), _rank(1, main_digest("mismatch_rank1"))]
    verdict = judge(ranks, ranks)
    assert verdict.kind is VerdictKind.MISMATCH
    assert sorted(g.collective or "" for g in verdict.culprits) == ["all_reduce", "broadcast"]


def test_mismatch_with_a_majority_blames_the_minority() -> None:
    ranks = [_rank(r, _digest("ar", "all_reduce", "all_reduce")) for r in range(5)]
    ranks.append(_rank(5, _digest("bc", "broadcast", "broadcast")))
    verdict = judge(ranks, ranks)
    assert verdict.kind is VerdictKind.MISMATCH
    assert [g.ranks for g in verdict.culprits] == [(5,)]
    assert [g.ranks for g in verdict.waiting] == [(0, 1, 2, 3, 4)]


def test_thousands_of_ranks_fold_into_groups() -> None:
    ranks = [_rank(r, _digest("ar", "all_reduce", "all_reduce")) for r in range(10_000)]
    ranks[4242] = _rank(4242, _digest("lb", "load_batch"))
    verdict = judge(ranks, ranks)
    assert [g.ranks for g in verdict.culprits] == [(4242,)]
    assert len(verdict.waiting) == 1
    assert len(verdict.waiting[0].ranks) == 9_999


def test_all_waiting_in_one_collective_blames_nobody() -> None:
    ranks = [_rank(r, _digest("ar", "all_reduce", "all_reduce")) for r in range(3)]
    verdict = judge(ranks, ranks)
    assert verdict.kind is VerdictKind.ALL_WAITING
    assert verdict.culprits == ()


def test_no_collective_blames_the_stuck_ranks() -> None:
    ranks = [_rank(0, _digest("a", "spin")), _rank(1, _digest("b", "lock"), since=9.0)]
    verdict = judge(ranks, [ranks[0]])
    assert verdict.kind is VerdictKind.NO_COLLECTIVE
    assert [g.ranks for g in verdict.culprits] == [(0,)]
    assert [g.ranks for g in verdict.waiting] == [(1,)]


def test_the_bootstraps_own_sampler_writes_the_same_format() -> None:
    dumps = recorded("sampler_rank0")
    assert len(dumps) == 3
    main = dumps[-1].main
    assert main is not None
    assert [f.function for f in main.frames][:3] == ["all_reduce", "wrapper", "step"]
