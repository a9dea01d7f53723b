"""The tests' one harness: processes in /proc, marked processes, and bounded waits.

Every test module that looks for processes or waits for something to happen
uses these, instead of a copy of its own. Waits poll with a short interval and
always have a deadline; a wait that runs out fails the test, saying what it
waited for. ``tests/conftest.py`` builds its leak check (the ``mark``
fixture) on :func:`marked_pids` and :func:`wait_until_gone`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

MARK = "RALLYPOINT_TEST_MARK"
POLL = 0.02  # seconds between two looks


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid`` from ``/proc/<pid>/stat``, or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    state = proc_state(pid)
    return state is not None and state[0] != "Z"


def marked_pids(mark: str, variable: str = MARK) -> list[int]:
    """Pids of live processes (not this one) whose environment holds ``variable=mark``."""
    needle = f"{variable}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = POLL
) -> None:
    """Return once ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_until_gone(mark: str, seconds: float, variable: str = MARK) -> list[int]:
    """Wait up to ``seconds`` for the marked processes to end; return the survivors."""
    deadline = time.monotonic() + seconds
    while (left := marked_pids(mark, variable)) and time.monotonic() < deadline:
        time.sleep(POLL * 2)
    return left


def wait_for_files(paths: Iterable[Path], timeout: float = 60) -> None:
    """Wait until every one of ``paths`` exists."""
    paths = list(paths)

    def missing() -> list[str]:
        return [str(p) for p in paths if not p.exists()]

    wait_until(lambda: not missing(), timeout, f"files {missing()}")


def wait_for_file(path: Path, timeout: float = 30) -> str:
    """Wait until ``path`` exists; return its text."""
    wait_for_files([path], timeout)
    return path.read_text()
