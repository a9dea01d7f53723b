"""The command line of each worker (contract §1.6).

``python -u script args``, ``python -u -m module args`` or ``program args``,
where ``python`` is ``PYTHON_EXEC`` or this interpreter, and every argument
goes through ``string.Template.safe_substitute(local_rank=N)`` as in torchrun
(so ``$local_rank`` becomes the rank and ``$$`` becomes ``$``).
"""

from __future__ import annotations

import string
import sys
from collections.abc import Mapping

from rallypoint.config import Entrypoint, EntrypointKind


def substitute_local_rank(args: tuple[str, ...], local_rank: int) -> tuple[str, ...]:
    """Replace ``$local_rank``/``${local_rank}`` in every argument, as torchrun does."""
    return tuple(string.Template(a).safe_substitute(local_rank=local_rank) for a in args)


def substitute_local_rank_any(args: tuple[object, ...], local_rank: int) -> tuple[object, ...]:
    """The same for a callable's arguments: only the strings among them change."""
    return tuple(
        string.Template(a).safe_substitute(local_rank=local_rank) if isinstance(a, str) else a
        for a in args
    )


def python_executable(environ: Mapping[str, str]) -> str:
    """``PYTHON_EXEC`` from the launcher's environment, else this interpreter."""
    return environ.get("PYTHON_EXEC", sys.executable)


FUNCTION_CHILD = "rallypoint.workers.function_child"


def worker_argv(
    entrypoint: Entrypoint, local_rank: int, environ: Mapping[str, str], payload: str | None = None
) -> list[str]:
    """The argv of one worker.

    Function workers (``--run-path`` and API callables) run in a fresh
    interpreter through :mod:`rallypoint.workers.function_child`; a callable's
    pickled call lies in the file ``payload``.
    """
    args = list(substitute_local_rank(entrypoint.args, local_rank))
    python = python_executable(environ)
    if entrypoint.kind is EntrypointKind.RUN_PATH:
        return [python, "-u", "-m", FUNCTION_CHILD, "run-path", entrypoint.target, *args]
    if entrypoint.kind is EntrypointKind.CALLABLE:
        if payload is None:
            raise ValueError("a callable worker needs its payload file")
        return [python, "-u", "-m", FUNCTION_CHILD, "call", payload]
    if entrypoint.kind is EntrypointKind.MODULE:
        return [python, "-u", "-m", entrypoint.target, *args]
    if entrypoint.kind is EntrypointKind.BINARY:
        return [entrypoint.target, *args]
    if entrypoint.kind is EntrypointKind.SCRIPT:
        return [python, "-u", entrypoint.target, *args]
    raise ValueError(f"unknown entrypoint kind {entrypoint.kind}")
