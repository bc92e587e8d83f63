"""How work carries on: now, or later in a task that someone keeps.

Two things every part of the gate needs and none should write twice:

- ``spawn``: create a task, name it, and keep a reference in the owner's set
  until it ends (the event loop holds only a weak one; a task nobody keeps
  can vanish mid-flight). Bare ``asyncio.create_task`` is banned by ruff
  (TID251) in favour of this.
- ``then``: the ready-now/wait split in one place. A step returns its result
  when it has it, or a coroutine when it must wait (a lookup, a body still
  arriving). ``then(step, carry_on)`` continues at once in the first case and
  in the second returns one coroutine that awaits the step and continues; the
  front door runs that coroutine as the request's one task. So the usual calls
  (a read, a cached gated call) need no task, and no step exists twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias, TypeVar, cast

__all__ = ["Later", "Step", "resolved", "spawn", "then"]

T = TypeVar("T")
Later: TypeAlias = Coroutine[Any, Any, None] | None
"""What a front-door step hands back: None when it is over (or callbacks carry it on), else
the coroutine to run as the request's task."""
Step: TypeAlias = T | Coroutine[Any, Any, T]
"""A result now, or a coroutine that gives it later."""


def spawn(coro: Coroutine[Any, Any, T], name: str, keep: set[asyncio.Task[Any]]) -> asyncio.Task[T]:
    """Run ``coro`` as a task named ``name``, kept in ``keep`` until it ends."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    keep.add(task)
    task.add_done_callback(keep.discard)
    return task


def then(step: Step[T], carry_on: Callable[[T], Later]) -> Later:
    """Continue with ``step``'s result at once, or return the coroutine that waits for it."""
    if _waits(step):
        return _later(cast(Coroutine[Any, Any, T], step), carry_on)
    return carry_on(cast(T, step))  # not a coroutine: the result itself


_KINDS: dict[type, bool] = {}  # filled as types are met: one per step type (~10 in all)


def _waits(step: object) -> bool:
    """Whether ``step`` is a coroutine, remembered per type.

    ``asyncio.iscoroutine`` says no only after asking the ``Coroutine`` ABC
    (about a microsecond), and a ready result is the common case.
    """
    kind = type(step)
    known = _KINDS.get(kind)
    if known is None:
        known = asyncio.iscoroutine(step)
        if len(_KINDS) < 64:
            _KINDS[kind] = known
    return known


async def _later(step: Coroutine[Any, Any, T], carry_on: Callable[[T], Later]) -> None:
    work = carry_on(await step)
    if work is not None:
        await work


async def resolved(step: Step[T]) -> T:
    """The result of ``step`` for a caller that is a coroutine already (the gRPC service)."""
    if _waits(step):
        result: T = await cast(Coroutine[Any, Any, T], step)
        return result
    return cast(T, step)  # not a coroutine: the result itself
