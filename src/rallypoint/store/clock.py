"""The only clock the store needs: a monotonic reading for lease deadlines.

Deliberately narrower than ``rallypoint.clock.Clock`` (which also reads wall time): any
object with ``monotonic()`` works, so the agent's clock, ``rallypoint.clock.SystemClock``
and a three-line fake in a test all fit.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MonotonicClock"]


class MonotonicClock(Protocol):
    """A source of monotonic time in seconds; only differences between readings matter."""

    def monotonic(self) -> float:
        """Return the current monotonic time in seconds."""
        ...
