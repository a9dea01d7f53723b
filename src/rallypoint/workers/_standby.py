"""A standby worker: import the job's modules ahead of time, then wait to become a worker.

Run through the bootstrap (``bootstrap.py standby SOCK NICE MODULES MODE
TARGET``; the agent's side is :mod:`rallypoint.workers.standby`). It lowers
its main thread's CPU priority by NICE, imports each of MODULES (comma
separated) with ``sys.path[0]`` as the worker's will be (MODE and TARGET are
the worker's), puts its priority back, writes READY to the unix socket SOCK
and blocks reading it. The agent then sends one message: a byte carrying,
as SCM_RIGHTS, the worker's stdout, stderr (and stack channel, when the argv names one), then the
worker's bootstrap argv and environment, NUL separated, then end of file.
:func:`wait` moves the descriptors onto 1 and 2, makes ``os.environ`` what a
cold worker's would be, and returns the argv, which ``_bootstrap.run`` then
runs as it runs a cold worker's.

A module that fails to import is skipped: the user's program meets the same
error when it imports it, as it would cold. Only modules the interpreter has
already loaded are used, and ``_socket`` (taken out of ``sys.modules`` again
unless an imported module needs it).
"""

import os
import sys

TYPE_CHECKING = False  # typing is not loaded in a bare interpreter
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable

CHUNK = 1 << 16
MAX_FDS = 3  # stdout, stderr, stack channel
INT = 4  # bytes per descriptor in SCM_RIGHTS data
READY = b"R"  # written to the agent once the imports are done


def wait(argv: list[str], path_entry: "Callable[[str, str], str]") -> list[str]:
    """Warm up, wait for the agent's message, become that worker; return its bootstrap argv.

    ``path_entry(mode, target)`` is what the worker will have first on ``sys.path``.
    """
    sock_text, nice_text, modules, mode, target = argv
    entry = path_entry(mode, target)
    _warm_up([m for m in modules.split(",") if m], entry, int(nice_text))
    _say_ready(int(sock_text))
    payload, fds = _receive(int(sock_text))
    if not payload:  # the agent went away without a word: nothing to become
        os._exit(0)
    worker_argv, entries = decode_order(payload)
    _take_stdio(fds)
    if worker_argv[0] != "-":
        worker_argv[0] = str(fds[2])  # the stack channel, under the number it got here
    _replace_environ(entries)
    _forget_directory_listings()
    return worker_argv


def decode_order(payload: bytes) -> tuple[list[str], list[bytes]]:
    """The agent's message (after its first byte): the worker's argv, its ``KEY=value`` entries."""
    fields = payload.split(b"\0")
    count = int(fields[0])
    return [os.fsdecode(field) for field in fields[1 : 1 + count]], fields[1 + count :]


def _warm_up(modules: list[str], entry: str, nice: int) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, base + nice)  # this thread only, on Linux
    safe = getattr(sys.flags, "safe_path", False)
    saved = sys.path[0 : 0 if safe else 1]
    sys.path[0 : len(saved)] = [entry]
    try:
        for name in modules:
            _try_import(name)
    finally:
        if sys.path[:1] == [entry]:
            sys.path[0:1] = saved
        if nice:
            try:  # noqa: SIM105 - contextlib is not loaded in a bare interpreter
                os.setpriority(os.PRIO_PROCESS, 0, base)
            except OSError:
                pass


def _say_ready(fd: int) -> None:
    """Tell the agent the imports are done (one byte it reads; it may be gone already)."""
    try:  # noqa: SIM105 - contextlib is not loaded in a bare interpreter
        os.write(fd, READY)
    except OSError:
        pass


def _try_import(name: str) -> None:
    try:  # noqa: SIM105 - contextlib is not loaded in a bare interpreter
        __import__(name)
    except Exception:  # noqa: S110 - the program meets the error itself, cold
        pass


def _receive(fd: int) -> tuple[bytes, list[int]]:
    had = "_socket" in sys.modules
    import _socket

    try:
        conn = _socket.socket(fileno=fd)
        first, ancillary, _, _ = conn.recvmsg(CHUNK, _socket.CMSG_SPACE(MAX_FDS * INT))
        chunks = [first]
        while chunk := _recv_to_end(conn):
            chunks.append(chunk)
        conn.close()
        fds = [
            int.from_bytes(data[i : i + INT], sys.byteorder)
            for level, kind, data in ancillary
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
            for i in range(0, len(data) - len(data) % INT, INT)
        ]
    finally:
        if not had:
            del sys.modules["_socket"]
    return b"".join(chunks)[1:], fds


def _recv_to_end(conn: "_socket.socket") -> bytes:
    """The next part of the message; b"" at its end.

    The agent closes its end once it has sent all; had our READY not been read
    by then, the close resets the connection, which a unix socket reports only
    after everything sent before it has been read: so a reset is the end too.
    """
    try:
        return conn.recv(CHUNK)
    except ConnectionResetError:
        return b""


def _take_stdio(fds: list[int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, target in zip(fds[:2], (1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)


def _replace_environ(entries: list[bytes]) -> None:
    """``os.environ`` as the worker's: the agent's entries, then what start-up changed here.

    CPython may change its environment as it starts (PEP 538 sets LC_CTYPE
    under the C locale), and a module imported here may have set some too;
    a cold worker has the same changes, so they are carried over.
    """
    changed, dropped = _startup_changes()
    os.environ.clear()
    for entry in entries:
        key, _, value = entry.partition(b"=")
        os.environ[os.fsdecode(key)] = os.fsdecode(value)
    for name in dropped.intersection(os.environ):
        del os.environ[name]
    os.environ.update(changed)


def _startup_changes() -> tuple[dict[str, str], set[str]]:
    with open("/proc/self/environ", "rb") as handle:
        started = {
            os.fsdecode(key): os.fsdecode(value)
            for key, sep, value in (e.partition(b"=") for e in handle.read().split(b"\0"))
            if sep
        }
    now = dict(os.environ)
    return {k: v for k, v in now.items() if started.get(k) != v}, set(started) - set(now)


def _forget_directory_listings() -> None:
    """Files made since the warm-up must be found, as ``importlib.invalidate_caches`` does."""
    for finder in [*sys.meta_path, *sys.path_importer_cache.values()]:
        invalidate = getattr(finder, "invalidate_caches", None)
        if invalidate is not None:
            invalidate()
