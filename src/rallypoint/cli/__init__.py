"""The command line: ``rallypoint [flags] script [script args]``.

:func:`entry` is the console script. It traps the default signals before
anything else is imported, so a signal during start-up is never lost, then
hands over to :func:`rallypoint.cli.main.main`.
"""

from __future__ import annotations

import signal
import sys

from rallypoint.signals import DEFAULT_SIGNALS

_caught: list[int] = []


def _remember(signum: int, _frame: object) -> None:
    _caught.append(signum)


def entry() -> None:
    """Console-script entry point: exit with what :func:`main` returns.

    The launcher leaves with ``os._exit`` once its output is flushed: by then
    every worker is gone and every file written and closed, and tearing down the
    interpreter's objects one by one would only delay the exit.
    """
    for sig in DEFAULT_SIGNALS:
        signal.signal(sig, _remember)
    from rallypoint.cli.main import main

    code = main(sys.argv[1:], early_signals=_caught)
    import contextlib
    import logging
    import os

    files = sys.modules.get("rallypoint.logs.file_writer")
    if files is not None:  # a start that failed before the supervisor drained them
        with contextlib.suppress(RuntimeError):
            files.LOG_FILES.drain()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
