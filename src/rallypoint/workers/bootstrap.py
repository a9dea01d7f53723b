"""The first code a Python worker runs: arm faulthandler, then become the user's program.

Run by path, never imported (the agent builds the command in
:mod:`rallypoint.workers.command`)::

    python -u .../bootstrap.py FD PERIOD script SCRIPT ARGS...
    python -u .../bootstrap.py FD PERIOD module MODULE ARGS...

``FD`` is the write end of the agent's stack channel (``-`` for none) and
``PERIOD`` the seconds between two stack samples (``0`` for none).

Design note: the user must not be able to tell this file ran. So it imports
only its sibling ``_bootstrap`` (from its cached bytecode: a script is
compiled on every start, a module is not) and modules a bare interpreter has
already loaded, nothing of the rallypoint package; it leaves no trace of them
in ``sys.path`` or ``sys.modules``. Then it does what CPython's own ``pymain_run_python`` does for
``python -u script.py`` and ``python -u -m module``: ``sys.argv``,
``sys.path[0]`` (unless ``-P``/``-I``), ``sys.orig_argv``, a fresh
``__main__`` with ``__file__``, ``__loader__`` and ``__spec__`` as CPython
sets them, the source compiled without this file's ``__future__`` flags. The
user's code runs from this module's top level, and a failure is re-raised
with a bare ``raise`` once this file's frames are cut from its traceback: the
interpreter itself then prints it (through ``sys.excepthook``), turns
``SystemExit`` into the exit code, ends an uncaught ``KeyboardInterrupt`` by
SIGINT and runs ``atexit``, exactly as for a plain run.

The channel is a pipe the agent reads: a first line names the main thread,
then faulthandler writes its dumps (periodic samples, and all threads' stacks
on SIGSEGV, SIGFPE, SIGABRT, SIGBUS and SIGILL). It is non-blocking, so a
worker never waits for the agent (a dump that does not fit is cut short), and
not inheritable, so the user's own subprocesses do not get it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _bootstrap  # type: ignore[import-not-found]  # cached bytecode: no compile

del sys.path[0], sys.modules["_bootstrap"]
try:
    _bootstrap.run(sys.argv[1:])
except BaseException as _failure:
    _failure.__traceback__ = _bootstrap.own_tail(_failure.__traceback__, __file__)
    raise
