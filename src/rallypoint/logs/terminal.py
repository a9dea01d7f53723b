"""Pseudo-terminals for workers whose stream would be the user's terminal under torchrun.

Design note: under torchrun a worker inherits the launcher's terminal, so
``isatty()``, colours and widths come from it. Here the agent must read the
worker's stderr (its last lines go into the failure summary), so instead of a
pipe the worker gets a pseudo-terminal of the same window size, which follows
the launcher's terminal when it is resized. As under torchrun, it is not the
worker's controlling terminal: the worker leads a session of its own and only
inherits the fd (the slave is opened ``O_NOCTTY``), so ``/dev/tty`` and job
control are what they would be under torchrun. Output processing is off on
the slave, so the bytes we read are the bytes the worker wrote (the user's
terminal still turns ``\n`` into ``\r\n`` itself).
"""

from __future__ import annotations

import contextlib
import os
import termios


def is_terminal(fd: int) -> bool:
    """True when the launcher's ``fd`` is a terminal."""
    return os.isatty(fd)


def open_pty(like: int) -> tuple[int, int]:
    """A new pseudo-terminal (master, slave) sized as the terminal at fd ``like``."""
    master, slave = os.openpty()
    try:
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # oflag: pass bytes through unchanged
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        copy_size(like, slave)
        os.set_inheritable(master, False)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def copy_size(source: int, target: int) -> None:
    """Give the terminal at ``target`` the window size of the one at ``source`` (if both are)."""
    with contextlib.suppress(OSError):
        termios.tcsetwinsize(target, termios.tcgetwinsize(source))
