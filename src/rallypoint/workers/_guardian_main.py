"""The guardian process itself (run as ``python -S`` this file; standard library only).

It reads lines from its stdin, a pipe from the agent:

- ``+G<pgid>`` / ``-G<pgid>``: a worker's process group to kill if the agent dies / to forget;
- ``+P<pid>`` / ``-P<pid>``: the same for one process (a descendant that escaped its group);
- ``E<entry>``: an environment entry (``NAME=value``) that the job's workers and all their
  descendants inherit; processes carrying it are swept when the agent dies;
- ``Q``: the agent is ending normally (skip the sweep; the registered groups are still killed).

At end of file -- the agent has gone, however it died -- it SIGKILLs every registered group
and process, then, unless ``Q`` came, every process whose environment holds a registered
entry, until a pass finds no new one. It blocks every catchable signal for its whole life:
the agent spawns it with them already blocked, so not even its first instant is exposed
(under Slurm's proctrack/linuxproc every process of the step is signalled, this one too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

SWEEP_PASSES = 10  # a killed process cannot fork; a few passes catch forks in flight


def shield() -> None:
    """Block, and ignore, every signal that can be caught."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_IGN)


def carriers(entries: set[bytes], me: int) -> set[int]:
    """Pids of the processes whose environment holds one of ``entries``."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if entries.intersection(environ):
            found.add(int(name))
    return found


def kill(pid: int, group: bool) -> None:
    """SIGKILL a process or a process group; gone ones are fine."""
    with contextlib.suppress(OSError):
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)


def sweep(entries: set[bytes]) -> None:
    """Kill the carriers of ``entries`` until a pass finds no new one."""
    killed: set[int] = set()
    for _ in range(SWEEP_PASSES):
        fresh = carriers(entries, os.getpid()) - killed
        if not fresh:
            return
        for pid in fresh:
            kill(pid, group=False)
        killed |= fresh


def main() -> None:
    """Watch until the agent's pipe ends, then kill what it left."""
    shield()
    registered: dict[bytes, set[int]] = {b"G": set(), b"P": set()}
    entries: set[bytes] = set()
    ending = False
    for line in sys.stdin.buffer:
        line = line.rstrip(b"\n")
        if line[:1] in (b"+", b"-"):
            kind, number = line[1:2], int(line[2:])
            (registered[kind].add if line[:1] == b"+" else registered[kind].discard)(number)
        elif line[:1] == b"E":
            entries.add(line[1:])
        elif line == b"Q":
            ending = True
    for pgid in registered[b"G"]:
        kill(pgid, group=True)
    for pid in registered[b"P"]:
        kill(pid, group=False)
    if entries and not ending:
        sweep(entries)


if __name__ == "__main__":
    main()
