"""The command line of each worker (contract §1.6).

torchrun runs ``python -u script args``, ``python -u -m module args`` or
``program args``, where ``python`` is ``PYTHON_EXEC`` or this interpreter, and
every argument goes through ``string.Template.safe_substitute(local_rank=N)``
(so ``$local_rank`` becomes the rank and ``$$`` becomes ``$``). rallypoint
runs the same interpreter with the same flags on
:mod:`rallypoint.workers.bootstrap` (by path, so nothing of rallypoint is
imported), which arms the stack channel and then runs the script or module as
that command would; ``--no-python`` programs run as they are.
"""

from __future__ import annotations

import os
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass

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


FUNCTION_CHILD = "rallypoint.agent.function_child"
BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")
BOOTSTRAP_FILES = frozenset({BOOTSTRAP, os.path.join(os.path.dirname(BOOTSTRAP), "_bootstrap.py")})


@dataclass(frozen=True, slots=True)
class StackChannel:
    """Where a worker's bootstrap writes its stacks: a pipe's write end, and how often."""

    fd: int
    period: float  # seconds between two samples; 0 for crash stacks only


def _bootstrap(python: str, channel: StackChannel | None, *rest: str) -> list[str]:
    fd, period = ("-", "0") if channel is None else (str(channel.fd), repr(channel.period))
    return [python, "-u", BOOTSTRAP, fd, period, *rest]


def worker_argv(
    entrypoint: Entrypoint,
    local_rank: int,
    environ: Mapping[str, str],
    payload: str | None = None,
    stacks: StackChannel | None = None,
) -> list[str]:
    """The argv of one worker.

    Function workers (``--run-path`` and API callables) run in a fresh
    interpreter through :mod:`rallypoint.agent.function_child`; a callable's
    pickled call lies in the file ``payload``. ``stacks`` is the channel a
    Python worker's bootstrap writes to (None: no stacks).
    """
    args = list(substitute_local_rank(entrypoint.args, local_rank))
    python = python_executable(environ)
    if entrypoint.kind is EntrypointKind.RUN_PATH:
        target = [FUNCTION_CHILD, "run-path", entrypoint.target, *args]
        return _bootstrap(python, stacks, "module", *target)
    if entrypoint.kind is EntrypointKind.CALLABLE:
        if payload is None:
            raise ValueError("a callable worker needs its payload file")
        return _bootstrap(python, stacks, "module", FUNCTION_CHILD, "call", payload)
    if entrypoint.kind is EntrypointKind.MODULE:
        return _bootstrap(python, stacks, "module", entrypoint.target, *args)
    if entrypoint.kind is EntrypointKind.BINARY:
        return [entrypoint.target, *args]
    if entrypoint.kind is EntrypointKind.SCRIPT:
        return _bootstrap(python, stacks, "script", entrypoint.target, *args)
    raise ValueError(f"unknown entrypoint kind {entrypoint.kind}")


def standby_argv(
    worker: list[str], control_fd: int, nice: int, modules: tuple[str, ...]
) -> list[str]:
    """The argv of a standby for the worker whose cold argv is ``worker`` (a bootstrap one).

    It runs the same interpreter, flags and bootstrap; the bootstrap waits as a
    standby on ``control_fd`` (see ``workers/_standby.py``) until it becomes a worker.
    """
    if worker[2:3] != [BOOTSTRAP]:
        raise ValueError("only a Python worker can have a standby")
    mode, target = worker[5], worker[6]
    return [*worker[:3], "standby", str(control_fd), str(nice), ",".join(modules), mode, target]
