"""TaskOwner: a failing task is reported at once, by name; close cancels and joins all."""

from __future__ import annotations

import asyncio

from rallypoint.tasks import TaskOwner


def test_the_first_failure_is_reported_at_once_and_close_joins_the_rest() -> None:
    reported: list[tuple[str, str]] = []

    async def forever() -> None:
        await asyncio.Event().wait()

    async def broken() -> None:
        raise ValueError("bad record")

    async def main() -> None:
        owner = TaskOwner("test", lambda error, task: reported.append((repr(error), task)))
        sleeper = owner.spawn(forever(), "sleeper")
        owner.spawn(broken(), "broken")
        owner.spawn(broken(), "broken-too")
        for _ in range(3):
            await asyncio.sleep(0)
        assert reported == [("ValueError('bad record')", "broken")]
        assert owner.failed_task == "broken"
        assert isinstance(owner.failure, ValueError)
        await owner.close()
        assert sleeper.cancelled()

    asyncio.run(main())


def test_cancelled_and_finished_tasks_are_no_failures() -> None:
    reported: list[str] = []

    async def quick() -> None:
        return None

    async def main() -> None:
        owner = TaskOwner("test", lambda _error, task: reported.append(task))
        owner.spawn(quick(), "quick")
        owner.spawn(asyncio.sleep(10), "cancelled").cancel()
        await owner.close()
        await owner.close()  # twice is fine

    asyncio.run(main())
    assert reported == []
    assert TaskOwner("t", lambda _e, _t: None).failure is None
