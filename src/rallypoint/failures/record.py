"""``@record``: write a worker's uncaught exception where the launcher looks for it.

Works like ``torch.distributed.elastic.multiprocessing.errors.record`` without
importing torch: on an exception it writes ``TORCHELASTIC_ERROR_FILE`` in
torchrun's format and re-raises; ``SystemExit(0)`` counts as success.
rallypoint does not need it (its summary falls back to the tail of stderr),
but it makes the summary exact.
"""

from __future__ import annotations

import faulthandler
import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rallypoint.failures.error_file import exception_document, write_error_file

P = ParamSpec("P")
R = TypeVar("R")


def record(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Decorate a worker's entry function so its failure reaches the summary."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        if not faulthandler.is_enabled():  # keep the bootstrap's stack channel
            faulthandler.enable(all_threads=True)
        try:
            return fn(*args, **kwargs)
        except SystemExit as exc:
            if exc.code in (0, None):
                return None
            raise
        except Exception as exc:
            path = os.environ.get("TORCHELASTIC_ERROR_FILE")
            if path:
                write_error_file(path, exception_document(exc))
            raise

    return wrapper
