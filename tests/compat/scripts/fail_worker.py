"""A worker that fails in a chosen way on one rank (torch only for ``record`` mode).

Every rank first writes its pid to ``$COMPAT_DIR/rank<RANK>.pid``. Environment:

* ``COMPAT_MODE``: how rank ``$COMPAT_FAIL_RANK`` (default 1) ends:
  ``raise`` (an uncaught ValueError from a nested function), ``record`` (the
  same, with ``main`` decorated by torch's own ``@record``), ``exit3``
  (``sys.exit(3)``), ``segv`` (SIGSEGV to itself), ``sleep`` (sleeps until
  someone kills it);
* ``COMPAT_OTHERS``: what the other ranks do: ``exit`` (exit 0 at once; the
  failing rank waits until they are gone, so they are not stopped by the
  launcher) or ``sleep`` (sleep until stopped; the failing rank waits until
  they are all running);
* ``COMPAT_GO``: if set, every rank waits for the file ``$COMPAT_DIR/go`` after
  writing its pid file (the test decides when the ranks go on).
"""

import os
import signal
import sys
import time

rank = int(os.environ["RANK"])
world = int(os.environ["WORLD_SIZE"])
folder = os.environ["COMPAT_DIR"]
mode = os.environ["COMPAT_MODE"]
fail_rank = int(os.environ.get("COMPAT_FAIL_RANK", "1"))
others = os.environ.get("COMPAT_OTHERS", "exit")

if rank == fail_rank and mode == "record":
    from torch.distributed.elastic.multiprocessing.errors import record
else:

    def record(fn):  # type: ignore[no-untyped-def,misc]  # torch's record, minus the error file
        return fn


def pid_file(r: int) -> str:
    return os.path.join(folder, f"rank{r}.pid")


def announce() -> None:
    tmp = pid_file(rank) + ".tmp"
    with open(tmp, "w") as out:
        out.write(str(os.getpid()))
    os.replace(tmp, pid_file(rank))


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for_others() -> None:
    deadline = time.monotonic() + 60
    for r in range(world):
        if r == rank:
            continue
        while not os.path.exists(pid_file(r)):
            assert time.monotonic() < deadline, f"rank {r} never started"
            time.sleep(0.01)
        if others == "exit":
            with open(pid_file(r)) as src:
                pid = int(src.read())
            while not gone(pid):
                assert time.monotonic() < deadline, f"rank {r} never ended"
                time.sleep(0.01)
    if others == "exit":
        time.sleep(1.5)  # let the launcher see the clean exits first


def check_shape(dims: int) -> None:
    if dims != 3:
        raise ValueError(f"bad shape: expected 3 dims, got {dims}")


def wait_for_go() -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(folder, "go")):
        assert time.monotonic() < deadline, "no go signal"
        time.sleep(0.01)


@record
def main() -> None:
    announce()
    if os.environ.get("COMPAT_GO"):
        wait_for_go()
    if rank != fail_rank:
        if others == "sleep":
            time.sleep(300)
        return
    wait_for_others()
    if mode in ("raise", "record"):
        check_shape(2)
    elif mode == "exit3":
        sys.exit(3)
    elif mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(60)
    elif mode == "sleep":
        time.sleep(300)
    else:
        raise SystemExit(f"unknown COMPAT_MODE {mode}")


main()
