"""gate.tasks: spawned tasks are kept and named; ``then`` continues now or returns a coroutine."""

from __future__ import annotations

import asyncio
from typing import Any

from gate.tasks import Later, resolved, spawn, then


async def test_spawn_keeps_the_task_until_it_ends_and_names_it() -> None:
    """A spawned task is held by its owner's set while it runs, under its name, and let go after."""
    keep: set[asyncio.Task[Any]] = set()
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 7

    task = spawn(work(), "lookup:a", keep)
    assert keep == {task}
    assert task.get_name() == "lookup:a"
    release.set()
    assert await task == 7
    await asyncio.sleep(0)  # done callbacks run on the next loop pass
    assert keep == set()


async def test_then_with_a_result_continues_at_once() -> None:
    """A step that has its result continues in the same call: no coroutine, no task."""
    seen: list[int] = []

    def carry_on(value: int) -> Later:
        seen.append(value)
        return None

    assert then(3, carry_on) is None
    assert seen == [3]


async def test_then_with_a_coroutine_returns_one_that_waits_and_continues() -> None:
    """A step that must wait hands back one coroutine: it continues, then runs what follows."""
    seen: list[str] = []

    async def lookup() -> str:
        await asyncio.sleep(0)
        return "accepted"

    async def answer(value: str) -> None:
        seen.append(f"answered {value}")

    def carry_on(value: str) -> Later:
        seen.append(value)
        return answer(value)

    later = then(lookup(), carry_on)
    assert later is not None
    assert seen == []  # nothing happens before the coroutine runs
    await later
    assert seen == ["accepted", "answered accepted"]


async def test_resolved_gives_the_result_either_way() -> None:
    """A coroutine caller gets the value whether the step had it or had to wait."""

    async def later() -> int:
        return 5

    assert await resolved(4) == 4
    assert await resolved(later()) == 5
