"""Failure reports: the same failing script under torchrun and rallypoint, side by side.

Both launchers run the script at the same time, each with its own ``--log-dir``;
the test parses both failure summaries (torchrun's ``ChildFailedError`` block
and rallypoint's) and compares them field by field. Where rallypoint differs on
purpose (docs/differences.md, "Failure summary"), the test asserts the
documented behaviour of each launcher instead of equality:

* without an error file torchrun shows ``<N/A>`` / ``To enable traceback ...``,
  rallypoint the tail of the worker's stderr;
* the ranks the launcher stopped itself are ``-15 (SIGTERM)`` failures for
  torchrun, and rallypoint lists them apart, under "Stopped by rallypoint after
  the root cause (not failures)";
* identical tracebacks are shown once by rallypoint;
* rallypoint adds a headline (``rallypoint: rank R (local L) on HOST failed
  first: ...``) and writes ``failure.json``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.compat._helpers import LAUNCHERS, SCRIPTS, Outcome, base_env, finish_each, launch_each
from tests.conftest import wait_until_gone
from tests.harness import alive, proc_state, wait_for_files, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.torch]

FAIL_WORKER = SCRIPTS / "fail_worker.py"
SAME_ERROR = SCRIPTS / "same_error.py"
NO_TRACEBACK = "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"
MESSAGE = "ValueError: bad shape: expected 3 dims, got 2"
RULE = re.compile(r"^(=+|-+)$")
BLOCK_START = re.compile(r"^\[(\d+)\]:$")
FIELD = re.compile(r"^  (time|host|rank|exitcode|error_file|traceback)\s*: ?(.*)$")
FOLDED = re.compile(r"^  \(ranks ([\d, ]+) failed with the same traceback as one shown above\)$")
HEADLINE = re.compile(
    r"^rallypoint: rank (?P<rank>\d+) \(local (?P<local>\d+)\) on (?P<host>\S+) failed first: "
    r"(?P<how>exit -?\d+|signal SIG[A-Z0-9]+)(?: \(killed by the kernel's OOM killer\))? "
    r"after (?P<secs>\d+\.\d) s: (?P<message>.+)$"
)
REPORT_LINE = re.compile(r"^rallypoint: failure report written to (?P<path>\S+)$")
TIME = re.compile(r"^\d{4}-\d\d-\d\d_\d\d:\d\d:\d\d$")


# --- running both launchers -------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One case under both launchers: outcomes, log folders, the folders the workers used."""

    outcomes: dict[str, Outcome]
    log_dirs: dict[str, Path]
    work_dirs: dict[str, Path]


def _prepare(
    folder: Path, mark: str, nproc: int, script: Path, **extra: str
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]], dict[str, Path], dict[str, Path]]:
    log_dirs = {name: folder / f"logs_{name}" for name in LAUNCHERS}
    work_dirs = {name: folder / f"work_{name}" for name in LAUNCHERS}
    argv, envs = {}, {}
    for name in LAUNCHERS:
        work_dirs[name].mkdir(parents=True)
        argv[name] = [f"--nproc-per-node={nproc}", f"--log-dir={log_dirs[name]}", str(script)]
        envs[name] = base_env(
            folder, mark, OMP_NUM_THREADS="1", COMPAT_DIR=str(work_dirs[name]), **extra
        )
    return argv, envs, log_dirs, work_dirs


def _run_frozen(
    procs: Mapping[str, subprocess.Popen[str]], work_dirs: Mapping[str, Path], nproc: int
) -> dict[str, Outcome]:
    """Let the workers end while their launcher is frozen, so that it sees every end at once.

    Waits until every rank wrote its pid file, stops each launcher (SIGSTOP; the workers'
    parent must be the launcher itself), creates each ``go`` file, waits until every
    worker is a zombie, then resumes the launchers and collects their output.
    """
    frozen: list[int] = []
    try:
        wait_for_files([work_dirs[n] / f"rank{r}.pid" for n in procs for r in range(nproc)])
        pids = {
            name: [int((work_dirs[name] / f"rank{r}.pid").read_text()) for r in range(nproc)]
            for name in procs
        }
        for name, proc in procs.items():
            parents = {(proc_state(pid) or ("?", -1))[1] for pid in pids[name]}
            assert parents == {proc.pid}, (name, parents, proc.pid)
            os.kill(proc.pid, signal.SIGSTOP)
            frozen.append(proc.pid)
        for name in procs:
            (work_dirs[name] / "go").touch()
        every = [pid for group in pids.values() for pid in group]
        wait_until(lambda: not any(alive(pid) for pid in every), 60, "every worker to end")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        outcomes = finish_each(procs)
    return outcomes


# --- parsing the summary ----------------------------------------------------------------


@dataclass
class Block:
    """One ``[idx]:`` block of a summary."""

    idx: int
    fields: dict[str, str] = field(default_factory=dict)
    traceback: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return int(self.fields["rank"].split()[0])

    @property
    def exitcode(self) -> str:
        """The exitcode field with the pid left out: ``-11 (pid: P)  (SIGSEGV)``."""
        return re.sub(r"\(pid: \d+\)", "(pid: P)", self.fields["exitcode"])


@dataclass
class Summary:
    """A parsed failure summary (torchrun's block, or rallypoint's with its extras)."""

    title: str
    width: int
    others: list[Block]
    root: Block
    other_lines: list[str]  # the raw lines of the Failures: section
    root_lines: list[str]
    folded: list[int] | None
    stopped: list[str]


def _blocks(lines: Sequence[str]) -> tuple[list[Block], list[int] | None]:
    blocks: list[Block] = []
    folded = None
    in_traceback = False
    for line in lines:
        if (start := BLOCK_START.match(line)) is not None:
            blocks.append(Block(int(start[1])))
            in_traceback = False
        elif (fold := FOLDED.match(line)) is not None:
            folded = [int(r) for r in fold[1].split(", ")]
            in_traceback = False
        elif in_traceback:
            assert line.startswith("  ") or not line, line
            blocks[-1].traceback.append(line[2:])
        elif (item := FIELD.match(line)) is not None:
            blocks[-1].fields[item[1]] = item[2]
            if item[1] == "traceback":
                blocks[-1].traceback.append(item[2])
                in_traceback = True
        else:
            assert line in ("  <NO_OTHER_FAILURES>", ""), line
    return blocks, folded


def parse_summary(stderr: str) -> Summary:
    lines = stderr.splitlines()
    start = next(
        i
        for i, line in enumerate(lines[:-1])
        if line.startswith("=") and RULE.match(line) and lines[i + 1].endswith(" FAILED")
    )
    assert RULE.match(lines[start + 2]), lines[start : start + 3]
    sections: list[list[str]] = [[]]
    for line in lines[start + 3 :]:
        if RULE.match(line):
            assert len(line) == len(lines[start]), "rules of different widths"
            if line.startswith("="):
                break
            sections.append([])
        else:
            sections[-1].append(line)
    failures, root, *rest = sections
    assert failures[0] == "Failures:", failures
    assert root[0] == "Root Cause (first observed failure):", root
    others, folded = _blocks(failures[1:])
    (root_block,), _ = _blocks(root[1:])
    stopped: list[str] = []
    if rest:
        (section,) = rest
        assert section[0] == "Stopped by rallypoint after the root cause (not failures):"
        stopped = section[1:]
    return Summary(
        lines[start + 1],
        len(lines[start]),
        others,
        root_block,
        failures[1:],
        root[1:],
        folded,
        stopped,
    )


def _check_block_format(block: Block) -> None:
    assert list(block.fields) == ["time", "host", "rank", "exitcode", "error_file", "traceback"]
    assert TIME.match(block.fields["time"]), block.fields["time"]
    assert re.fullmatch(r"\d+ \(local_rank: \d+\)", block.fields["rank"]), block.fields["rank"]
    # torchrun's exact spacing: a trailing space for exit codes, two spaces before a signal
    assert re.fullmatch(r"-?\d+ \(pid: P\) ( \(SIG[A-Z0-9]+\))?", block.exitcode), block.exitcode


@dataclass(frozen=True)
class Both:
    """Both summaries of one case, checked for what every case shares."""

    torchrun: Summary
    rallypoint: Summary
    headline: re.Match[str]
    report: dict[str, Any]  # failure.json, as JSON


def _rallypoint_extras(
    outcome: Outcome, log_dir: Path, culprit: int
) -> tuple[re.Match[str], dict[str, Any]]:
    """The headline (first line with "failed first") and failure.json, checked."""
    lines = outcome.stderr.splitlines()
    headline = next(line for line in lines if "failed first" in line)
    match = HEADLINE.match(headline)
    assert match, headline
    assert int(match["rank"]) == culprit, headline
    last = [line for line in lines if line.strip()][-1]
    where = REPORT_LINE.match(last)
    assert where, f"last line is not the report path: {last!r}"
    path = Path(where["path"])
    assert path.is_relative_to(log_dir), (path, log_dir)
    assert path.name == "failure.json"
    report = json.loads(path.read_text())
    assert report["culprit"]["rank"] == culprit, report["culprit"]
    assert report["headline"] == headline.removeprefix("rallypoint: "), report["headline"]
    return match, report


def _both(run: Run, culprit: int) -> Both:
    """Parse and check what every case shares; return both summaries."""
    for outcome in run.outcomes.values():
        assert outcome.returncode == 1, outcome.describe()
    summaries = {name: parse_summary(o.stderr) for name, o in run.outcomes.items()}
    torch_summary, ours = summaries["torchrun"], summaries["rallypoint"]
    for name, summary in summaries.items():
        for block in [summary.root, *summary.others]:
            _check_block_format(block)
        assert summary.root.idx == 0, name
        assert summary.root.rank == culprit, (name, run.outcomes[name].describe())
    assert ours.title == torch_summary.title
    assert ours.root.fields["rank"] == torch_summary.root.fields["rank"]
    assert ours.root.fields["host"] == torch_summary.root.fields["host"]
    headline, report = _rallypoint_extras(
        run.outcomes["rallypoint"], run.log_dirs["rallypoint"], culprit
    )
    assert headline["host"] == ours.root.fields["host"]
    assert report["culprit"]["exitcode"] == int(ours.root.fields["exitcode"].split()[0])
    return Both(torch_summary, ours, headline, report)


# --- the cases that need no help from the test while they run ---------------------------

# case -> (nproc, environment of the script)
CASES: dict[str, tuple[int, dict[str, str]]] = {
    "raise": (2, {"COMPAT_MODE": "raise"}),
    "record": (2, {"COMPAT_MODE": "record"}),
    "exit3": (2, {"COMPAT_MODE": "exit3"}),
    "segv": (2, {"COMPAT_MODE": "segv"}),
    "rank2_of_4": (4, {"COMPAT_MODE": "raise", "COMPAT_FAIL_RANK": "2", "COMPAT_OTHERS": "sleep"}),
}
CULPRIT = {"raise": 1, "record": 1, "exit3": 1, "segv": 1, "rank2_of_4": 2}


def _run_case(case: str, root: Path, mark: str) -> Run:
    nproc, extra = CASES[case]
    folder = root / case
    folder.mkdir()
    argv, envs, log_dirs, work_dirs = _prepare(folder, mark, nproc, FAIL_WORKER, **extra)
    return Run(finish_each(launch_each(argv, envs, folder)), log_dirs, work_dirs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every case of CASES, both launchers, all started together (torchrun mostly waits).

    The launches carry one marker for the module; like the ``mark`` fixture, the
    teardown fails if any of their processes outlive the runs.
    """
    root = tmp_path_factory.mktemp("failures_vs_torchrun")
    module_mark = uuid.uuid4().hex
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(CASES)) as pool:
            futures = {case: pool.submit(_run_case, case, root, module_mark) for case in CASES}
            done = {case: future.result() for case, future in futures.items()}
        yield done
    finally:
        left = wait_until_gone(module_mark, 5.0)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


def test_exception_without_record(runs: dict[str, Run]) -> None:
    both = _both(runs["raise"], culprit=1)
    torch_root, our_root = both.torchrun.root, both.rallypoint.root
    for summary in (both.torchrun, both.rallypoint):
        assert summary.root.exitcode == "1 (pid: P) "
        assert summary.root.fields["error_file"] == "<N/A>"
        assert summary.other_lines == ["  <NO_OTHER_FAILURES>"]
    # torchrun: nothing to show without @record
    assert torch_root.traceback == [NO_TRACEBACK]
    # rallypoint (documented): the tail of the worker's stderr, i.e. its traceback
    assert our_root.traceback[0] == "Traceback (most recent call last):", our_root.traceback
    assert our_root.traceback[-1] == MESSAGE, our_root.traceback
    frames = [line for line in our_root.traceback if line.startswith("  File ")]
    assert any(
        re.fullmatch(r'  File ".*/fail_worker\.py", line \d+, in check_shape', f) for f in frames
    )
    assert both.headline["how"] == "exit 1"
    assert both.headline["message"] == MESSAGE
    assert both.report["culprit"]["message"] == MESSAGE
    # the worker's own traceback reaches the launcher's stderr under both
    for outcome in runs["raise"].outcomes.values():
        assert MESSAGE in outcome.stderr.splitlines(), outcome.describe()


def test_exception_with_torch_record(runs: dict[str, Run]) -> None:
    run = runs["record"]
    both = _both(run, culprit=1)
    roots = {"torchrun": both.torchrun.root, "rallypoint": both.rallypoint.root}
    for name, root in roots.items():
        assert root.exitcode == "1 (pid: P) "
        error_file = Path(root.fields["error_file"])
        assert error_file.is_relative_to(run.log_dirs[name]), (name, error_file)
        assert error_file.parts[-3:] == ("attempt_0", "1", "error.json"), error_file
        written = json.loads(error_file.read_text())["message"]
        assert written["message"] == MESSAGE, written
        assert root.traceback[0] == "Traceback (most recent call last):", (name, root.traceback)
        assert MESSAGE in root.traceback, (name, root.traceback)
    # the same error file format, shown the same way
    assert roots["rallypoint"].traceback == roots["torchrun"].traceback
    assert both.rallypoint.other_lines == both.torchrun.other_lines == ["  <NO_OTHER_FAILURES>"]
    assert both.headline["message"] == MESSAGE
    assert both.report["culprit"]["error_file"] == roots["rallypoint"].fields["error_file"]


def test_exit_code_3(runs: dict[str, Run]) -> None:
    both = _both(runs["exit3"], culprit=1)
    assert both.torchrun.root.exitcode == both.rallypoint.root.exitcode == "3 (pid: P) "
    assert both.torchrun.root.traceback == [NO_TRACEBACK]
    assert both.rallypoint.root.fields["error_file"] == both.torchrun.root.fields["error_file"]
    assert both.headline["how"] == "exit 3"


def test_sigsegv(runs: dict[str, Run]) -> None:
    both = _both(runs["segv"], culprit=1)
    for summary in (both.torchrun, both.rallypoint):
        assert summary.root.exitcode == "-11 (pid: P)  (SIGSEGV)"
        pid = summary.root.fields["exitcode"].split("pid: ")[1].split(")")[0]
        # no stderr and no error file: both say which signal hit which pid
        assert summary.root.traceback == [f"Signal 11 (SIGSEGV) received by PID {pid}"]
    assert both.headline["how"] == "signal SIGSEGV"
    assert both.report["culprit"]["exitcode"] == -11


def test_rank2_of_4_fails_and_the_others_are_stopped(runs: dict[str, Run]) -> None:
    """The intended difference: torchrun lists the ranks it SIGTERMed as ``-15`` failures;
    rallypoint shows them apart as stopped (docs/differences.md, "Failure summary")."""
    both = _both(runs["rank2_of_4"], culprit=2)
    # torchrun: ranks 0, 1, 3 are failures with -15 (SIGTERM)
    assert sorted(b.rank for b in both.torchrun.others) == [0, 1, 3]
    for block in both.torchrun.others:
        assert block.exitcode == "-15 (pid: P)  (SIGTERM)", block
    assert both.torchrun.stopped == []
    # rallypoint: no other failure; ranks 0, 1, 3 stopped, in their own section
    assert both.rallypoint.other_lines == ["  <NO_OTHER_FAILURES>"]
    stopped = [
        re.fullmatch(r"  rank (\d+) \(local_rank: (\d+), pid \d+\): signal SIGTERM", line)
        for line in both.rallypoint.stopped
    ]
    assert all(stopped), both.rallypoint.stopped
    assert [(int(m[1]), int(m[2])) for m in stopped if m] == [(0, 0), (1, 1), (3, 3)]
    assert [s["rank"] for s in both.report["stopped"]] == [0, 1, 3]
    assert [f["rank"] for f in both.report["failures"]] == [2]
    assert both.torchrun.root.exitcode == both.rallypoint.root.exitcode == "1 (pid: P) "


def _rule_width_rule(summary: Summary) -> int:
    """torch's ChildFailedError.format_msg: min(60, widest of the title and the blocks)."""
    lines = [summary.title, *summary.other_lines, *summary.root_lines[:]]
    lines = [line for line in lines if line != "  <NO_OTHER_FAILURES>"]
    return min(60, max(len(line) for line in lines))


@pytest.mark.parametrize("case", list(CASES))
def test_rule_width_follows_torchrun_rule(case: str, runs: dict[str, Run]) -> None:
    """The ``=``/``-`` rules are min(60, widest of the title and the failure blocks)."""
    for name, outcome in runs[case].outcomes.items():
        summary = parse_summary(outcome.stderr)
        assert summary.width == _rule_width_rule(summary), (name, summary.title, summary.width)


# --- cases where the test acts while the workers run ------------------------------------


def test_sigkill_from_outside(tmp_path: Path, mark: str) -> None:
    argv, envs, log_dirs, work_dirs = _prepare(
        tmp_path, mark, 2, FAIL_WORKER, COMPAT_MODE="sleep", COMPAT_OTHERS="sleep"
    )
    procs = launch_each(argv, envs, tmp_path)
    try:
        wait_for_files([work_dirs[n] / f"rank{r}.pid" for n in LAUNCHERS for r in (0, 1)])
        for name in LAUNCHERS:
            os.kill(int((work_dirs[name] / "rank1.pid").read_text()), signal.SIGKILL)
    finally:
        outcomes = finish_each(procs)
    both = _both(Run(outcomes, log_dirs, work_dirs), culprit=1)
    for summary in (both.torchrun, both.rallypoint):
        assert summary.root.exitcode == "-9 (pid: P)  (SIGKILL)"
    assert both.headline["how"] == "signal SIGKILL"
    # the sibling: a -15 failure for torchrun, stopped for rallypoint (documented)
    assert [(b.rank, b.exitcode) for b in both.torchrun.others] == [(0, "-15 (pid: P)  (SIGTERM)")]
    assert len(both.rallypoint.stopped) == 1
    assert both.rallypoint.stopped[0].startswith("  rank 0 (local_rank: 0, pid ")


def test_eight_ranks_same_traceback(tmp_path: Path, mark: str) -> None:
    """Eight ranks raise the same error; rallypoint shows the traceback once.

    For every rank to count as a failure (not as stopped after the first one), all
    eight must have ended before the launcher looks: the test stops each launcher
    (SIGSTOP) once its workers are ready, lets them all raise, and resumes the
    launcher once they are all zombies. Both launchers get the same treatment.
    """
    nproc = 8
    argv, envs, log_dirs, work_dirs = _prepare(tmp_path, mark, nproc, SAME_ERROR)
    outcomes = _run_frozen(launch_each(argv, envs, tmp_path), work_dirs, nproc)
    for outcome in outcomes.values():
        assert outcome.returncode == 1, outcome.describe()
    torch_summary = parse_summary(outcomes["torchrun"].stderr)
    ours = parse_summary(outcomes["rallypoint"].stderr)
    # torchrun: eight failure blocks, all exit 1, no traceback
    torch_blocks = [torch_summary.root, *torch_summary.others]
    assert sorted(b.rank for b in torch_blocks) == list(range(nproc))
    assert {b.exitcode for b in torch_blocks} == {"1 (pid: P) "}
    assert {tuple(b.traceback) for b in torch_blocks} == {(NO_TRACEBACK,)}
    # rallypoint: the traceback once, the other seven named as having the same one
    # (the root cause itself may differ: torchrun breaks whole-second ties by rank order,
    # rallypoint times exits to the sub-second)
    culprit = ours.root.rank
    assert ours.title == torch_summary.title
    headline, report = _rallypoint_extras(outcomes["rallypoint"], log_dirs["rallypoint"], culprit)
    assert ours.others == [], ours.other_lines
    assert ours.folded == sorted(set(range(nproc)) - {culprit}), ours.other_lines
    assert ours.stopped == []
    assert ours.root.traceback[-1] == "RuntimeError: collective timed out in step 7"
    assert outcomes["rallypoint"].stderr.count("Traceback (most recent call last):") == nproc + 1
    summary_text = outcomes["rallypoint"].stderr.split(ours.title, 1)[1]
    assert summary_text.count("Traceback (most recent call last):") == 1
    assert headline["message"] == "RuntimeError: collective timed out in step 7"
    assert sorted(f["rank"] for f in report["failures"]) == list(range(nproc))
    assert ours.root.exitcode == "1 (pid: P) "


def test_success_and_failure_seen_together(tmp_path: Path, mark: str) -> None:
    """Rank 0 exits 0, then rank 1 exits 3, and the launcher notices both at once.

    torchrun reports the failure whatever order it notices the exits in; the job
    must not count as a success because the last worker to be looked at succeeded.
    """
    argv, envs, log_dirs, work_dirs = _prepare(
        tmp_path, mark, 2, FAIL_WORKER, COMPAT_MODE="exit3", COMPAT_GO="1"
    )
    outcomes = _run_frozen(launch_each(argv, envs, tmp_path), work_dirs, 2)
    both = _both(Run(outcomes, log_dirs, work_dirs), culprit=1)
    assert both.torchrun.root.exitcode == both.rallypoint.root.exitcode == "3 (pid: P) "
    assert both.rallypoint.other_lines == both.torchrun.other_lines == ["  <NO_OTHER_FAILURES>"]
