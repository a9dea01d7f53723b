"""What the worker bootstrap does, imported by ``bootstrap.py`` from its cached bytecode.

See :mod:`rallypoint.workers.bootstrap` for why and how; only the standard
library's already loaded modules are imported here.

Design note on the sampler: faulthandler's own periodic dump
(``dump_traceback_later``) walks the other threads' frames from a C thread
without the GIL. On CPython 3.11 that crashes the worker with SIGSEGV while
it imports (6 runs of 6 of ``import torch`` with a dump every 5 ms; none once
the imports were over; cpython issues 116008, 131580, 88615): at one dump
every few seconds it would still kill some workers of a large job at start-up.
So samples are taken by a low-level thread (``_thread``, so
``threading.enumerate()`` does not list it) that sleeps, takes the GIL,
reads ``sys._current_frames()`` and writes one dump in faulthandler's format,
the main thread last. A rank blocked in C with the GIL released (a
collective, a sleep, I/O) is sampled as well; one whose C code holds the GIL
gives no samples, which the detector never counts as stuck. faulthandler
itself still writes the crash dump on a fatal signal.
"""

import _frozen_importlib_external as _external
import _signal  # type: ignore[import-not-found]  # signal's C half: no enum import at start-up
import _thread
import builtins
import faulthandler
import os
import sys
import time
from types import CodeType, FrameType

HEADER = "rallypoint-stacks 1 main 0x%016x pid %d\n"
MAX_THREADS = MAX_FRAMES = 100  # as faulthandler


def _thread_lines(ident: int, frame: FrameType | None) -> list[str]:
    lines = [f"Thread 0x{ident:016x} (most recent call first):"]
    while frame is not None and len(lines) <= MAX_FRAMES:
        code, line = frame.f_code, frame.f_lineno
        lines.append(f'  File "{code.co_filename}", line {line or "???"} in {code.co_name}')
        frame = frame.f_back
    return lines


def _sample(main: int, me: int) -> bytes:
    """Every thread's stack in faulthandler's format, the main thread last."""
    frames = sys._current_frames()
    idents = [i for i in frames if i not in (me, main)][: MAX_THREADS - 1]
    lines = [f"Sample ({time.time():.3f})!"]
    for ident in [*idents, main] if main in frames else idents:
        lines += _thread_lines(ident, frames[ident])
    return ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sample_forever(fd: int, period: float, main: int) -> None:
    """The sampler thread: sleeps, then writes every thread's stack (see the design note).

    It blocks every signal first: a signal sent to the worker (a notice, a stop) must reach
    the threads the user's code runs, as under torchrun, where no such thread exists; one
    delivered here would take the default action (USR1: the end) under a main thread that
    blocked it to ``sigwait`` for it.
    """
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    me = _thread.get_ident()
    while True:
        time.sleep(period)
        try:
            _write(fd, _sample(main, me))
        except OSError:  # full (the agent is busy: this sample is cut short) or gone
            continue


def _arm(fd_text: str, period: float) -> None:
    if fd_text == "-":
        return
    fd = int(fd_text)
    try:
        os.set_inheritable(fd, False)
        os.set_blocking(fd, False)
        os.write(fd, (HEADER % (_thread.get_ident(), os.getpid())).encode())
    except OSError:  # the fd did not survive (a wrapper closed it): run without stacks
        return
    faulthandler.enable(file=fd, all_threads=True)
    if period > 0:
        _thread.start_new_thread(_sample_forever, (fd, period, _thread.get_ident()))


def _fresh_main() -> dict[str, object]:
    # The interpreter runs this file as ``__main__`` and, in 3.11, still uses that first
    # module's dict after the file ends; once ``sys.modules`` lets go of it nothing else
    # may hold it (a SyntaxError leaves no frame that does), and it is freed early: a
    # crash at exit ("none_dealloc"), seen only where few objects refer to None (a fresh
    # venv, ``-S``). A reference from an already loaded private module keeps it alive.
    _external._rallypoint_first_main = sys.modules["__main__"]  # type: ignore[attr-defined]
    main = type(sys)("__main__")
    namespace: dict[str, object] = vars(main)
    namespace.update({"__annotations__": {}, "__builtins__": builtins})
    sys.modules["__main__"] = main
    return namespace


def _cant_open(path: str, exc: OSError) -> None:
    sys.stderr.write(
        f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}\n"
    )
    sys.stderr.flush()
    os._exit(2)


def _script_code(script: str, namespace: dict[str, object]) -> CodeType:
    """Compile ``script`` (source or .pyc) as CPython's run-file step does."""
    path = _absolute(script)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        _cant_open(path, exc)
        raise
    namespace.update(__file__=path, __cached__=None)
    if data[:4] == _external.MAGIC_NUMBER:
        loader = _external.SourcelessFileLoader("__main__", path)
        namespace["__loader__"] = loader
        code = loader.get_code("__main__")
        if code is None:
            raise ImportError(f"no code in {path}")
        return code
    namespace["__loader__"] = _external.SourceFileLoader("__main__", path)
    return compile(data, path, "exec", dont_inherit=True)


def _absolute(path: str) -> str:
    """CPython's own absolute path: joined to the cwd, not normalised."""
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _is_importable_path(script: str) -> bool:
    """A folder or zip file with a ``__main__``: CPython runs it as a module."""
    if os.path.isdir(script):
        return True
    import zipimport

    try:
        zipimport.zipimporter(script)
    except (zipimport.ZipImportError, OSError):
        return False
    return True


def own_tail(tb: object, stub: str) -> object:
    """``tb`` without its first entries, which are the bootstrap's frames."""
    mine = (stub, __file__)
    while tb is not None and tb.tb_frame.f_code.co_filename in mine:  # type: ignore[attr-defined]
        tb = tb.tb_next  # type: ignore[attr-defined]
    return tb


def _set_argv(interpreter_args: list[str], user_argv: list[str], given: list[str]) -> None:
    sys.argv = user_argv
    sys.orig_argv = [*interpreter_args, *given]


def _prepare(argv: list[str]) -> tuple[str, str]:
    """Arm the channel, set argv and the path; return (mode, target)."""
    fd_text, period, mode, target, *args = argv
    _arm(fd_text, float(period))
    interpreter_args = sys.orig_argv[: len(sys.orig_argv) - len(sys.argv)]
    safe = getattr(sys.flags, "safe_path", False)
    if mode == "module":
        _set_argv(interpreter_args, ["-m", *args], ["-m", target, *args])
        if not safe:
            sys.path[0] = os.getcwd()
        return mode, target
    _set_argv(interpreter_args, [target, *args], [target, *args])
    if _is_importable_path(target):
        sys.path[0 : 0 if safe else 1] = [_absolute(target)]
        return "module-path", "__main__"
    if not safe:
        sys.path[0] = os.path.dirname(os.path.realpath(target))
    return mode, target


def _standby(argv: list[str]) -> list[str]:
    """Wait as a standby (see ``_standby``); return the argv the agent then sent."""
    sys.path.insert(0, os.path.dirname(__file__))
    import _standby  # type: ignore[import-not-found]  # from its cached bytecode

    del sys.path[0], sys.modules["_standby"]
    return _standby.wait(argv, _path_entry)  # type: ignore[no-any-return]


def _path_entry(mode: str, target: str) -> str:
    """What :func:`_prepare` puts first on ``sys.path`` for ``mode`` and ``target``."""
    if mode == "module":
        return os.getcwd()
    if _is_importable_path(target):
        return _absolute(target)
    return os.path.dirname(os.path.realpath(target))


def run(argv: list[str]) -> None:
    """Become the program ``argv`` names (see the module docstring of ``bootstrap``)."""
    if argv[0] == "standby":
        argv = _standby(argv[1:])
    mode, target = _prepare(argv)
    namespace = _fresh_main()
    if mode == "script":
        exec(_script_code(target, namespace), namespace)  # noqa: S102 - the user's program
        return
    import runpy

    runpy._run_module_as_main(target, alter_argv=mode == "module")  # type: ignore[attr-defined]
