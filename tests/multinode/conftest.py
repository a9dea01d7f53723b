"""Fixtures for multi-node tests built on :mod:`tests.multinode.netns`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tests.multinode.netns import DEFAULT_PREFIX, NetnsLab, cleanup_stale, netns_available

MakeLab = Callable[[int], NetnsLab]


@pytest.fixture(scope="session")
def netns_ready() -> None:
    """Skip unless labs can be built; once per session, remove stale namespaces."""
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    cleanup_stale(DEFAULT_PREFIX)


@pytest.fixture
def netns_lab(netns_ready: None) -> Iterator[MakeLab]:
    """A factory ``make_lab(k) -> NetnsLab``: the lab is entered, and exited at teardown."""
    with contextlib.ExitStack() as stack:

        def make_lab(k: int) -> NetnsLab:
            return stack.enter_context(NetnsLab(k))

        yield make_lab
