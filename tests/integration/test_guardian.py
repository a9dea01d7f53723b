"""The guardian handle: closing it never blocks the agent's loop."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from rallypoint.workers.guardian import Guardian

pytestmark = pytest.mark.integration


def test_closing_a_guardian_that_does_not_exit_leaves_the_loop_running() -> None:
    async def scenario() -> tuple[float, int]:
        guardian = Guardian()
        os.kill(guardian.pid, signal.SIGSTOP)  # it cannot read its pipe's end, nor exit
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        try:
            await guardian.aclose(wait=0.3)
            return time.monotonic() - started, ticks
        finally:
            ticker.cancel()
            os.kill(guardian.pid, signal.SIGCONT)
            await asyncio.to_thread(guardian._process.wait, 10)

    elapsed, ticks = asyncio.run(scenario())
    print(f"aclose() returned after {elapsed:.3f} s; the loop ticked {ticks} times meanwhile")
    assert elapsed < 5.0
    assert ticks >= 3
