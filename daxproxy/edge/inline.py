"""Running a coroutine's first step inline, and the rest in a task only if it waits.

A cache hit's coroutine finishes without ever waiting: :func:`first_step` runs it with
``coro.send(None)`` straight from the protocol's callback and returns its answer, with no
task, future or timer made. A coroutine that does wait (a miss) has yielded the future it
waits on; :func:`resume` is the awaitable that a new task awaits to carry on with that same
coroutine: it hands the task what the coroutine yielded, and passes back into the
coroutine what the task sends or throws (a result, an exception, a cancellation), so the
task waits, fails and is cancelled exactly as if it had run the coroutine from the start.

While the first step runs, :class:`Carrier` is the loop's current task, so that code
that asks for one before it first waits (``asyncio.timeout``, aiohttp's timers, which
raise without one) finds one. A timer armed in the first step holds the carrier: once
the coroutine has moved to its task (:meth:`Carrier.bind`), the carrier hands a
cancellation, and the cancellation count, on to that task; a cancellation before then is
kept and passed on at binding.
"""

from __future__ import annotations

import asyncio
import types
from asyncio import tasks
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class Carrier:
    """Stands in for the current task during a first step run inline (one per connection,
    which handles one request at a time)."""

    __slots__ = ("_cancels", "_loop", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[Any] | None = None
        self._cancels = 0

    def bind(self, task: asyncio.Task[Any] | None) -> None:
        """The task now running the coroutine (None: none, the next request starts clean)."""
        self._task = task
        if task is not None and self._cancels:
            task.cancel()
        self._cancels = 0

    # What asyncio.timeout and aiohttp's timers call on the current task.

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def cancel(self, msg: Any = None) -> bool:
        if self._task is not None:
            return self._task.cancel(msg)
        self._cancels += 1
        return True

    def cancelling(self) -> int:
        return self._task.cancelling() if self._task is not None else self._cancels

    def uncancel(self) -> int:
        if self._task is not None:
            return self._task.uncancel()
        self._cancels = max(self._cancels - 1, 0)
        return self._cancels

    def done(self) -> bool:
        return False


def first_step(coro: Coroutine[Any, Any, T], carrier: Carrier) -> tuple[bool, Any]:
    """``(True, result)`` when ``coro`` finished in its first step; ``(False, yielded)``
    when it waits on ``yielded`` (hand both to :func:`resume` in a task). Its exception
    propagates."""
    loop = carrier.get_loop()
    try:
        tasks._enter_task(loop, carrier)  # type: ignore[arg-type]
    except RuntimeError:  # called from inside a task: that task is the current one
        entered = False
    else:
        entered = True
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    finally:
        if entered:
            tasks._leave_task(loop, carrier)  # type: ignore[arg-type]
    return False, yielded


@types.coroutine
def resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Carry on with ``coro``, which yielded ``yielded`` in its first step, in the awaiting
    task; its result is the coroutine's."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown in by the task: a cancellation, a failure
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
