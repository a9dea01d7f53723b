"""Time, injected: the agent and the rendezvous driver read time and wait only through a Clock.

Design note: deadlines are read from :meth:`Clock.monotonic`, and every wait (a
pause, a wait for something with a deadline) goes through :meth:`Clock.sleep` and
:meth:`Clock.wait_until`, never through ``asyncio.sleep`` or ``asyncio.wait_for``
directly, so that tests run the whole driver under a fake clock whose time jumps
(``tests/fakes.py``). This module imports asyncio only when a wait happens: the
launcher reads the clock before asyncio is imported (see ``agent/launchpad.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic time for durations and deadlines, wall time for reports, and waits."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps people read."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Pause for ``seconds`` of this clock's time."""
        ...

    async def wait_until(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        """Await ``awaitable`` until the monotonic ``deadline`` (None: no deadline).

        Raises:
            TimeoutError: the deadline passed first (``awaitable`` is cancelled).
        """
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wall(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        import asyncio

        await asyncio.sleep(seconds)

    async def wait_until(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        """``asyncio.timeout_at`` on the loop's clock, which is this monotonic clock too."""
        import asyncio

        if deadline is None:
            return await awaitable
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(loop.time() + deadline - time.monotonic()):
            return await awaitable
