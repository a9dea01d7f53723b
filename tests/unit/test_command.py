"""Worker command lines (contract §1.6)."""

from __future__ import annotations

import sys

import pytest

from rallypoint.config import Entrypoint, EntrypointKind
from rallypoint.workers.command import FUNCTION_CHILD, substitute_local_rank, worker_argv


def test_local_rank_substitution_collapses_double_dollars() -> None:
    args = ("$local_rank", "${local_rank}", "a$$b", "$OTHER", "--x=${local_rank}")
    assert substitute_local_rank(args, 3) == ("3", "3", "a$b", "$OTHER", "--x=3")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (EntrypointKind.SCRIPT, ["py", "-u", "t.py", "1"]),
        (EntrypointKind.MODULE, ["py", "-u", "-m", "t.py", "1"]),
        (EntrypointKind.BINARY, ["t.py", "1"]),
        (EntrypointKind.RUN_PATH, ["py", "-u", "-m", FUNCTION_CHILD, "run-path", "t.py", "1"]),
    ],
)
def test_argv_by_kind(kind: EntrypointKind, expected: list[str]) -> None:
    entry = Entrypoint(kind, "t.py", ("$local_rank",))
    assert worker_argv(entry, 1, {"PYTHON_EXEC": "py"}) == expected


def test_default_interpreter_is_ours() -> None:
    entry = Entrypoint(EntrypointKind.SCRIPT, "t.py")
    assert worker_argv(entry, 0, {})[0] == sys.executable
