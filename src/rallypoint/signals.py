"""The signals the launcher handles by default: the one list every layer uses.

Design note: the console script traps these before it imports anything else,
so a signal during start-up is never lost; this module therefore imports
nothing but :mod:`signal`. The list and its text form are torchrun's default
``--signals-to-handle`` (and ``TORCHELASTIC_SIGNALS_TO_HANDLE``).
"""

from __future__ import annotations

import signal

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
)
DEFAULT_SIGNALS_TEXT = ",".join(sig.name for sig in DEFAULT_SIGNALS)
UNCATCHABLE: frozenset[signal.Signals] = frozenset({signal.SIGKILL, signal.SIGSTOP})
