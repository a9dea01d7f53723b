"""The clock the store reads lease deadlines from, injected so tests can move time by hand."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of monotonic time in seconds; only differences between readings matter."""

    def monotonic(self) -> float:
        """Return the current monotonic time in seconds."""
        ...


class SystemClock:
    """The real monotonic clock (``time.monotonic``)."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()
