"""Workers on the user's terminal: a live progress bar, its width, breakpoint(), partial lines.

Each test makes its own pseudo-terminal (tests/terminal.py) and runs the
launcher in its foreground, as a shell would. Timing bounds are generous
(the machine is shared); the measured figures are printed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import WORKERS, launcher_env, rallypoint
from tests.terminal import Terminal

pytestmark = pytest.mark.integration

LAUNCH = ["-m", "rallypoint", "--standalone", "--nproc-per-node=1"]
STEP = re.compile(rb"step (\d+) at (\d+\.\d+) cols (-?\d+)")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(rows=33, columns=117)
    yield term
    term.close()


def arrivals(term: Terminal) -> dict[int, tuple[float, float, int]]:
    """Per bar step: (written at, shown at, columns the worker saw)."""
    seen: dict[int, tuple[float, float, int]] = {}
    for shown, chunk in term.chunks:
        for match in STEP.finditer(chunk):
            seen.setdefault(int(match[1]), (float(match[2]), shown, int(match[3])))
    return seen


def test_bar_on_stderr_is_live_on_a_terminal_of_the_users_size(
    terminal: Terminal, mark: str
) -> None:
    env = launcher_env(mark, STEPS="12", PERIOD="0.2")
    terminal.start([*LAUNCH, str(WORKERS / "tty_bar.py")], env)
    terminal.wait_for(b"step 3 ")
    terminal.resize(40, 99)
    assert terminal.finish() == 0, terminal.screen().decode()
    (line,) = re.findall(rb"probe (.*)\n", terminal.screen())
    probe = json.loads(line)
    # as under torchrun: a terminal on every fd, none of them the worker's controlling one
    assert probe == {
        "isatty": [True, True, True],
        "size": [117, 33],
        "controlling_terminal": False,
        "session_leader": True,
    }
    steps = arrivals(terminal)
    assert sorted(steps) == list(range(12)), terminal.screen().decode()
    lags = [shown - written for written, shown, _ in steps.values()]
    print(f"bar update lag: max {max(lags) * 1000:.0f} ms, median {sorted(lags)[6] * 1000:.0f} ms")
    assert max(lags) < 0.5, lags
    assert steps[0][2] == 117
    assert steps[11][2] == 99


@pytest.mark.parametrize("tee", [[], ["--tee=3"]], ids=["inherited-stdout", "tee"])
def test_breakpoint_takes_commands_typed_at_the_terminal(
    terminal: Terminal, mark: str, tee: list[str]
) -> None:
    terminal.start([*LAUNCH, *tee, str(WORKERS / "pdb_stop.py")], launcher_env(mark))
    terminal.wait_for(b"(Pdb) ")  # with --tee, a prompt without newline is shown too
    terminal.type("p 6*7\n")
    terminal.wait_for(b"42\n")
    terminal.type("c\n")
    terminal.wait_for(b"after pdb x=6")
    assert terminal.finish() == 0, terminal.screen().decode()


def read_timed(stream: object, into: list[tuple[float, bytes]]) -> threading.Thread:
    def run() -> None:
        read = stream.read1  # type: ignore[attr-defined]
        while chunk := read(65536):
            into.append((time.time(), chunk))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_partial_line_on_a_pipe_is_shown_before_its_newline(mark: str) -> None:
    argv = [sys.executable, *LAUNCH, "--tee=1", str(WORKERS / "partial_line.py")]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=launcher_env(mark, PAUSE="3")
    )
    out: list[tuple[float, bytes]] = []
    err: list[tuple[float, bytes]] = []
    with proc:
        readers = [read_timed(proc.stdout, out), read_timed(proc.stderr, err)]
        assert proc.wait(60) == 0
        for reader in readers:
            reader.join(10)
    for name, chunks in (("stdout", out), ("stderr", err)):
        whole = b"".join(c for _, c in chunks)
        first_shown, first = chunks[0]
        written = float(re.search(rb"half at (\d+\.\d+)", whole)[1])  # type: ignore[index]
        ended = float(re.search(rb"ended at (\d+\.\d+)", whole)[1])  # type: ignore[index]
        print(f"{name}: half a line shown {(first_shown - written) * 1000:.0f} ms after written")
        assert b"half at" in first, chunks
        assert b"ended" not in first, chunks
        assert first_shown - written < 1.0
        assert first_shown < ended
    stdout = b"".join(c for _, c in out)
    assert re.fullmatch(rb"\[default0\]:half at \S+ ended at \S+\n", stdout), stdout


def test_stderr_through_a_terminal_still_reaches_the_summary(terminal: Terminal, mark: str) -> None:
    terminal.start([*LAUNCH, str(WORKERS / "raise_error.py")], launcher_env(mark))
    assert terminal.finish() == 1
    screen = terminal.screen().decode()
    assert "failed first: exit 1 after" in screen
    summary = screen.split("Root Cause (first observed failure):")[1]
    assert "about to fail" in summary
    assert 'raise ValueError("bad shape (3, 4)")' in summary


@pytest.mark.parametrize("tee", [[], ["--tee=2"]], ids=["plain", "tee"])
def test_another_ranks_line_never_glues_to_an_unfinished_bar(mark: str, tee: list[str]) -> None:
    args = ["--standalone", "--nproc-per-node=2", *tee, str(WORKERS / "bar_and_warning.py")]
    result = rallypoint(args, launcher_env(mark))
    assert result.returncode == 0, result.stderr
    prefix = "[default1]:" if tee else ""
    lines = result.stderr.split("\n")
    assert f"{prefix}warning from rank 1" in lines, lines  # a line of its own
    bar = [line for line in lines if "bar " in line]
    assert all("warning" not in line for line in bar), bar
    assert "bar 3/3" in bar[-1]
