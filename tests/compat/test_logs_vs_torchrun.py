"""Tee, redirect and --local-ranks-filter: the same script under torchrun and rallypoint.

Each case runs ``scripts/numbered_lines.py`` (numbered lines on stdout and
stderr, per rank) under both launchers at once, each with its own
``--log-dir``, and compares:

* the per-rank files ``<log_dir>/<run>/attempt_0/<lr>/{stdout.log,stderr.log}``
  (which exist, and their exact contents);
* the worker lines on the launcher's stdout and on its stderr (sorted, prefixes
  included), leaving out the launchers' own log lines.

The one deliberate difference (docs/differences.md): a rank hidden by
``--local-ranks-filter`` whose stream is not redirected loses its output under
torchrun, and rallypoint keeps it in the rank's log file. The test asserts that
difference explicitly for those (rank, stream) pairs, and equality for the rest.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.compat._helpers import (
    LAUNCHERS,
    RALLYPOINT,
    SCRIPTS,
    Outcome,
    base_env,
    finish_each,
    launch_each,
)
from tests.conftest import wait_until_gone

pytestmark = [pytest.mark.integration, pytest.mark.torch]

SCRIPT = SCRIPTS / "numbered_lines.py"
LINES = 5
NPROC = 2
PARALLEL = 7  # case pairs running at once
STREAMS = {1: "stdout", 2: "stderr"}  # mask bit -> stream name
# The launchers' own lines: torchrun's glog-style records (``W1122 00:09:25.856000 <pid> ...]``)
# and rallypoint's messages and log records.
LAUNCHER_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ |rallypoint:|\[rallypoint\])")

# case -> launcher flags (besides --nproc-per-node and --log-dir)
CASES: dict[str, list[str]] = {
    "tee_0": ["-t", "0"],
    "tee_1": ["-t", "1"],
    "tee_2": ["-t", "2"],
    "tee_3": ["-t", "3"],
    "redirect_0": ["-r", "0"],
    "redirect_1": ["-r", "1"],
    "redirect_2": ["-r", "2"],
    "redirect_3": ["-r", "3"],
    "tee_per_rank": ["-t", "0:1,1:2"],
    "redirect_per_rank": ["-r", "0:3,1:1"],
    "filter_1_tee_3": ["--local-ranks-filter=1", "-t", "3"],
    "filter_0_tee_3": ["--local-ranks-filter=0", "-t", "3"],
    # filtered ranks that are not redirected: the documented difference
    "filter_1_plain": ["--local-ranks-filter=1"],
    "filter_1_tee_1": ["--local-ranks-filter=1", "-t", "1"],
}


def _mask(flags: Sequence[str], short: str) -> dict[int, int]:
    """local rank -> mask for ``-t``/``-r`` (unlisted ranks get 0), as torchrun parses it."""
    value = flags[flags.index(short) + 1] if short in flags else "0"
    if ":" not in value:
        return dict.fromkeys(range(NPROC), int(value))
    masks = dict.fromkeys(range(NPROC), 0)
    for item in value.split(","):
        rank, mask = item.split(":")
        masks[int(rank)] = int(mask)
    return masks


def _shown(flags: Sequence[str]) -> set[int]:
    for flag in flags:
        if flag.startswith("--local-ranks-filter="):
            return {int(r) for r in flag.split("=", 1)[1].split(",")}
    return set(range(NPROC))


def _lines(stream: str, rank: int, count: int = LINES) -> list[str]:
    tag = "out" if stream == "stdout" else "err"
    return [f"{tag} rank={rank} line={i}" for i in range(count)]


def _worker_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line and not LAUNCHER_LINE.match(line))


def _log_files(log_dir: Path) -> dict[str, str]:
    """``"<lr>/<name>"`` -> contents for the std logs of the run's only attempt."""
    runs = [p for p in log_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    attempt = runs[0] / "attempt_0"
    assert attempt.is_dir(), sorted(runs[0].iterdir())
    return {f"{p.parent.name}/{p.name}": p.read_text() for p in sorted(attempt.glob("*/std*.log"))}


@dataclass(frozen=True)
class Run:
    """One case's outcome under both launchers."""

    outcomes: dict[str, Outcome]
    log_dirs: dict[str, Path]


def _run_case(case: str, root: Path, mark: str) -> Run:
    folder = root / case
    folder.mkdir()
    log_dirs = {name: folder / f"logs_{name}" for name in LAUNCHERS}
    argv = {
        name: [
            f"--nproc-per-node={NPROC}",
            f"--log-dir={log_dirs[name]}",
            *CASES[case],
            str(SCRIPT),
        ]
        for name in LAUNCHERS
    }
    env = base_env(folder, mark, OMP_NUM_THREADS="1", COMPAT_LINES=str(LINES))
    return Run(finish_each(launch_each(argv, dict.fromkeys(LAUNCHERS, env), folder)), log_dirs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every case, both launchers, all started together (torchrun mostly waits, so
    running the pairs side by side keeps the module short on two cores).

    The launches carry one marker for the module; like the ``mark`` fixture, the
    teardown fails if any of their processes outlive the runs.
    """
    root = tmp_path_factory.mktemp("logs_vs_torchrun")
    module_mark = uuid.uuid4().hex
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {case: pool.submit(_run_case, case, root, module_mark) for case in CASES}
        done = {case: future.result() for case, future in futures.items()}
    yield done
    left = wait_until_gone(module_mark, 5.0)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


@pytest.mark.parametrize("case", list(CASES))
def test_tee_redirect_filter_match_torchrun(case: str, runs: dict[str, Run]) -> None:
    flags = CASES[case]
    outcomes, log_dirs = runs[case].outcomes, runs[case].log_dirs
    for outcome in outcomes.values():
        assert outcome.returncode == 0, outcome.describe()
    files = {name: _log_files(log_dirs[name]) for name in LAUNCHERS}
    console = {
        name: {"stdout": _worker_lines(o.stdout), "stderr": _worker_lines(o.stderr)}
        for name, o in outcomes.items()
    }

    # The documented difference: a hidden rank's stream that is neither redirected nor
    # tee'd is lost under torchrun and kept in its file by rallypoint.
    redirect, tee = _mask(flags, "-r"), _mask(flags, "-t")
    shown = _shown(flags)
    kept_by_rallypoint = [
        (rank, stream)
        for rank in range(NPROC)
        for bit, stream in STREAMS.items()
        if rank not in shown and not (redirect[rank] | tee[rank]) & bit
    ]
    for rank, stream in kept_by_rallypoint:
        key = f"{rank}/{stream}.log"
        assert files["rallypoint"].pop(key, None) == "".join(
            f"{line}\n" for line in _lines(stream, rank)
        ), (key, outcomes["rallypoint"].describe())
        assert not files["torchrun"].pop(key, ""), (key, "torchrun kept the output after all")
        for name in LAUNCHERS:
            lost = set(_lines(stream, rank))
            for where in ("stdout", "stderr"):
                assert not lost & {line.split("]:", 1)[-1] for line in console[name][where]}, (
                    name,
                    where,
                    "a hidden rank reached the console",
                )

    assert files["rallypoint"] == files["torchrun"], outcomes["rallypoint"].describe()
    assert console["rallypoint"] == console["torchrun"], (
        outcomes["torchrun"].describe(),
        outcomes["rallypoint"].describe(),
    )
    # and the comparison is not vacuous: every line of a shown rank is somewhere
    for rank in shown:
        for stream in STREAMS.values():
            everywhere = "\n".join(
                [files["torchrun"].get(f"{rank}/{stream}.log", ""), *console["torchrun"][stream]]
            )
            for line in _lines(stream, rank):
                assert line in everywhere, (line, outcomes["torchrun"].describe())


# --- rallypoint alone: volume and line integrity ------------------------------------------

PATTERN = re.compile(r"^(\[default(\d)\]:)?(out|err) rank=(\d) line=(\d+)( x+)?$")


def _run_rallypoint(
    args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RALLYPOINT, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_100k_lines_tee_reach_console_and_file_once_in_order(tmp_path: Path, mark: str) -> None:
    count = 100_000
    env = base_env(tmp_path, mark, COMPAT_LINES=str(count))
    log_dir = tmp_path / "logs"
    done = _run_rallypoint(
        ["--nproc-per-node=1", f"--log-dir={log_dir}", "-t", "3", str(SCRIPT)], env, tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = _log_files(log_dir)
    consoles = {"stdout": done.stdout, "stderr": done.stderr}
    for stream, text in consoles.items():
        want = _lines(stream, 0, count)
        shown = [line for line in text.splitlines() if not LAUNCHER_LINE.match(line)]
        assert shown == [f"[default0]:{line}" for line in want], (stream, len(shown))
        assert files[f"0/{stream}.log"] == "".join(f"{line}\n" for line in want), stream


@pytest.mark.parametrize("flags", [["-t", "3"], []], ids=["tee", "plain"])
def test_two_ranks_at_once_never_mix_within_a_line(
    flags: list[str], tmp_path: Path, mark: str
) -> None:
    count, pad = 20_000, 300
    env = base_env(
        tmp_path, mark, OMP_NUM_THREADS="1", COMPAT_LINES=str(count), COMPAT_PAD=str(pad)
    )
    done = _run_rallypoint(
        ["--nproc-per-node=2", f"--log-dir={tmp_path / 'logs'}", *flags, str(SCRIPT)],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for stream, text in (("out", done.stdout), ("err", done.stderr)):
        seen: dict[int, list[int]] = {0: [], 1: []}
        for line in text.splitlines():
            if LAUNCHER_LINE.match(line):
                continue
            match = PATTERN.match(line)
            assert match, f"mixed or torn {stream} line: {line[:200]!r}"
            prefix, prefix_rank, tag, rank, number, padding = match.groups()
            assert tag == stream, line[:200]
            assert padding == " " + "x" * pad, line[:200]
            assert (prefix is not None) == bool(flags), line[:200]
            if prefix is not None:
                assert prefix_rank == rank, line[:200]
            seen[int(rank)].append(int(number))
        for rank, numbers in seen.items():
            assert numbers == list(range(count)), (stream, rank, len(numbers))
