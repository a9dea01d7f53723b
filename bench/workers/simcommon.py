"""Helpers shared by the simulated-rendezvous processes (stdlib + rallypoint)."""

from __future__ import annotations

import asyncio
import cProfile
import os
import resource
import signal
import sys


def raise_fd_limit(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE to ``want`` (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((want, max(hard, want)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
        except (ValueError, OSError):
            continue
    return soft


def start_profile(path: str | None) -> cProfile.Profile | None:
    """Profile this process into ``path`` (dumped on SIGTERM too), or do nothing."""
    if not path:
        return None
    profile = cProfile.Profile()
    profile.enable()
    return profile


def dump_and_exit(profile: cProfile.Profile | None, path: str | None, code: int = 0) -> None:
    """Write the profile (if any) and leave at once, without a slow teardown."""
    if profile is not None and path:
        profile.disable()
        profile.dump_stats(path)
    sys.stdout.flush()
    os._exit(code)


def on_sigterm(profile: cProfile.Profile | None, path: str | None) -> None:
    """SIGTERM (the harness's timeout) dumps the profile before leaving."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, dump_and_exit, profile, path, 3)


async def read_line() -> str:
    """One line of stdin without blocking the loop."""
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
