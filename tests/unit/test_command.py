"""Worker command lines (contract §1.6)."""

from __future__ import annotations

import sys

import pytest

from rallypoint.config import Entrypoint, EntrypointKind
from rallypoint.workers.command import (
    BOOTSTRAP,
    FUNCTION_CHILD,
    StackChannel,
    substitute_local_rank,
    worker_argv,
)


def test_local_rank_substitution_collapses_double_dollars() -> None:
    args = ("$local_rank", "${local_rank}", "a$$b", "$OTHER", "--x=${local_rank}")
    assert substitute_local_rank(args, 3) == ("3", "3", "a$b", "$OTHER", "--x=3")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (EntrypointKind.SCRIPT, ["py", "-u", BOOTSTRAP, "7", "2.5", "script", "t.py", "1"]),
        (EntrypointKind.MODULE, ["py", "-u", BOOTSTRAP, "7", "2.5", "module", "t.py", "1"]),
        (EntrypointKind.BINARY, ["t.py", "1"]),
        (
            EntrypointKind.RUN_PATH,
            ["py", "-u", BOOTSTRAP, "7", "2.5", "module", FUNCTION_CHILD, "run-path", "t.py", "1"],
        ),
    ],
)
def test_argv_by_kind(kind: EntrypointKind, expected: list[str]) -> None:
    entry = Entrypoint(kind, "t.py", ("$local_rank",))
    assert worker_argv(entry, 1, {"PYTHON_EXEC": "py"}, stacks=StackChannel(7, 2.5)) == expected


def test_without_a_channel_the_bootstrap_arms_nothing() -> None:
    entry = Entrypoint(EntrypointKind.SCRIPT, "t.py")
    assert worker_argv(entry, 0, {"PYTHON_EXEC": "py"})[2:5] == [BOOTSTRAP, "-", "0"]


def test_default_interpreter_is_ours() -> None:
    entry = Entrypoint(EntrypointKind.SCRIPT, "t.py")
    assert worker_argv(entry, 0, {})[0] == sys.executable
