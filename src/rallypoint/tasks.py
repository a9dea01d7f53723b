"""Owners of background tasks: no task runs unowned, and none fails in silence.

Design note: a part that outlives one call (a rendezvous with its lease
keep-alive, watches and coordinator) cannot hold its tasks in one ``async with
asyncio.TaskGroup()``: its life spans many calls of its user. A
:class:`TaskOwner` gives it the same guarantees as a task group, in the spirit
of Trio's nurseries: every task is started through its owner; the first task
that ends with an error (anything but a cancellation) is kept as
:attr:`TaskOwner.failure` and reported at once to the owner's ``on_failure``
(which wakes whoever waits, so the error surfaces now, not at shutdown); and
:meth:`TaskOwner.close` cancels and joins every task, whatever happened before,
so the owner's cleanup (a lease revoke, closing connections) always runs after
it. Parts inside a part (a rendezvous's mirror and coordinator) start their
tasks through the owner they are given, and cancel their own on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

logger = logging.getLogger(__name__)


class TaskOwner:
    """Starts, watches and, at the end, cancels and joins a set of tasks."""

    def __init__(self, name: str, on_failure: Callable[[BaseException, str], None]) -> None:
        self.name = name
        self.failure: BaseException | None = None
        self.failed_task = ""
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as a task of this owner."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        assert error is not None
        if self.failure is not None:
            logger.debug("%s: task %s failed too: %r", self.name, task.get_name(), error)
            return
        self.failure, self.failed_task = error, task.get_name()
        logger.debug("%s: task %s failed: %r", self.name, task.get_name(), error)
        self._on_failure(error, task.get_name())

    async def close(self) -> None:
        """Cancel every task and wait until all have ended (their errors are already kept)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
