"""The child side of function workers (``--run-path`` and API callables).

Run as ``python -u -m rallypoint.agent.function_child run-path SCRIPT ARGS...``
or ``... call PAYLOAD``. The payload is a pickle the agent wrote for its own
child on the local disk (it never crosses a network): the parent's
``sys.path``, its ``__main__`` file (re-run as ``__mp_main__`` so functions
defined there unpickle, as multiprocessing's spawn does), the function, its
arguments and the path for the pickled return value. Failures are written to
``TORCHELASTIC_ERROR_FILE`` through :func:`rallypoint.failures.record.record`.
"""

from __future__ import annotations

import pickle  # local parent-to-child handoff only; never on the network
import runpy
import sys
import types

from rallypoint.failures.record import record


def run_script_path(script: str, *args: str) -> None:
    """Run ``script`` as ``__main__`` with ``args`` as its argv, like torchrun's --run-path."""
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


def _load_parent_main(main_path: str | None) -> None:
    if not main_path:
        return
    namespace = runpy.run_path(main_path, run_name="__mp_main__")
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__mp_main__"] = module
    sys.modules["__main__"] = module


def _call(payload_path: str) -> None:
    with open(payload_path, "rb") as handle:
        header = pickle.load(handle)  # noqa: S301 - written by our own agent
        sys.path[:0] = [p for p in header["sys_path"] if p not in sys.path]
        _load_parent_main(header["main_path"])
        fn, args, result_path = pickle.load(handle)  # noqa: S301
    value = record(fn)(*args)
    with open(result_path, "wb") as out:
        pickle.dump(value, out)


def main(argv: list[str]) -> None:
    """Dispatch ``run-path`` or ``call``."""
    mode, rest = argv[0], argv[1:]
    if mode == "run-path":
        record(run_script_path)(*rest)
    else:
        _call(rest[0])


if __name__ == "__main__":
    main(sys.argv[1:])
