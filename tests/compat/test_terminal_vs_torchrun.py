"""On the user's terminal, a worker sees what it sees under torchrun.

Both launchers run in the foreground of a pseudo-terminal of their own
(tests/terminal.py), at the same time: the worker's view of its terminal
(isatty of fds 0-2, window size, no controlling terminal, its own session) is
compared, progress-bar updates must arrive one by one under both, and
``breakpoint()`` must take commands typed at the terminal under both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat._helpers import LAUNCHERS, base_env
from tests.conftest import WORKERS
from tests.terminal import Terminal

pytestmark = [pytest.mark.integration, pytest.mark.torch]

STEP = re.compile(rb"step (\d+) at (\d+\.\d+)")


@pytest.fixture
def terminals() -> Iterator[dict[str, Terminal]]:
    made = {name: Terminal(rows=29, columns=101) for name in LAUNCHERS}
    yield made
    for term in made.values():
        term.close()


def start_both(terminals: dict[str, Terminal], script: str, env: dict[str, str]) -> None:
    for name, term in terminals.items():
        args = [*LAUNCHERS[name][1:], "--standalone", "--nproc-per-node=1", script]
        term.start(args, env)


def test_worker_sees_the_same_terminal(
    terminals: dict[str, Terminal], tmp_path: Path, mark: str
) -> None:
    start_both(terminals, str(WORKERS / "tty_bar.py"), base_env(tmp_path, mark, STEPS="6"))
    probes, lags = {}, {}
    for name, term in terminals.items():
        assert term.finish(120) == 0, term.screen().decode()
        (line,) = re.findall(rb"probe (.*)\n", term.screen())
        probes[name] = json.loads(line)
        shown = {int(m[1]): when - float(m[2]) for when, c in term.chunks for m in STEP.finditer(c)}
        assert sorted(shown) == list(range(6)), term.screen().decode()
        lags[name] = max(shown.values())
    print(f"slowest bar update: {', '.join(f'{n} {lag * 1000:.0f} ms' for n, lag in lags.items())}")
    assert probes["rallypoint"] == probes["torchrun"]
    assert probes["torchrun"]["size"] == [101, 29]
    assert max(lags.values()) < 0.5


def last_bar(screen: bytes) -> str:
    """The last state of the tqdm bar drawn on ``screen``."""
    (line,) = [ln for ln in screen.decode().split("\n") if "train:" in ln]
    return line.rsplit("\r", 1)[-1]


def test_real_tqdm_bar_is_as_wide_and_as_live_as_under_torchrun(
    terminals: dict[str, Terminal], tmp_path: Path, mark: str
) -> None:
    pytest.importorskip("tqdm")
    start_both(terminals, str(WORKERS / "tqdm_bar.py"), base_env(tmp_path, mark))
    widths, updates = {}, {}
    for name, term in terminals.items():
        assert term.finish(120) == 0, term.screen().decode()
        widths[name] = len(last_bar(term.screen()))
        updates[name] = sum(b"train:" in chunk for _, chunk in term.chunks)
    print(f"tqdm bar width {widths}, updates that arrived on their own {updates}")
    assert widths["rallypoint"] == widths["torchrun"]
    assert widths["torchrun"] > 80  # the window's width, not tqdm's 10-column fallback
    assert updates["rallypoint"] >= 6  # one by one, not in one burst at the end


def test_breakpoint_works_under_both(
    terminals: dict[str, Terminal], tmp_path: Path, mark: str
) -> None:
    start_both(terminals, str(WORKERS / "pdb_stop.py"), base_env(tmp_path, mark))
    for term in terminals.values():
        term.wait_for(b"(Pdb) ", 120)
        term.type("p 6*7\n")
        term.wait_for(b"42\n")
        term.type("c\n")
    for term in terminals.values():
        assert term.finish(60) == 0, term.screen().decode()
        assert b"after pdb x=6" in term.screen()
