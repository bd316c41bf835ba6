"""One fixed time limit for many awaits, kept with one loop timer rather than one each.

``asyncio.timeout`` arms and cancels a loop timer per use: about 4 µs, a few percent of a
forwarded request's CPU. Every upstream attempt has the same limit, so deadlines come in
the order they are set; :class:`Deadlines` keeps them in that order and one timer armed at
the earliest still pending. Contract: :meth:`Deadlines.bound` awaits an awaitable within
the limit and behaves as ``async with asyncio.timeout(limit)`` around it: past the limit
its task is cancelled and the await raises ``TimeoutError``; a cancellation from elsewhere
stays a ``CancelledError``; the task's cancellation count is left as it was. The clock
(``time`` and ``call_at``) is the loop's unless given, so tests drive the timer by hand.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """What :class:`Deadlines` uses of an event loop."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Any) -> asyncio.TimerHandle: ...


class _Pending:
    __slots__ = ("cancelling", "done", "expired", "task", "when")

    def __init__(self, when: float, task: Any) -> None:
        self.when = when
        self.task = task
        self.cancelling = task.cancelling()
        self.done = self.expired = False


class Deadlines:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, limit: float, clock: Clock | None = None
    ) -> None:
        self._loop = loop
        self._clock = loop if clock is None else clock
        self._limit = limit
        self._pending: deque[_Pending] = deque()  # in the order of their deadlines
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def bound(self, awaitable: Awaitable[T]) -> T:
        # The task running this (during an edge's first step, its stand-in: the cancel and
        # count calls reach the task that later takes the coroutine over).
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Deadlines.bound must run inside a task")
        pending = self._pending
        while pending and pending[0].done:  # finished in order, as most do
            pending.popleft()
        entry = _Pending(self._clock.time() + self._limit, task)
        pending.append(entry)
        if self._timer is None:
            self._timer = self._clock.call_at(entry.when, self._expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if entry.expired and task.uncancel() <= entry.cancelling:
                raise TimeoutError from None
            raise
        finally:
            entry.done = True

    def _expire(self) -> None:
        """Cancel the tasks whose deadlines passed; re-arm at the next pending one."""
        self._timer = None
        pending = self._pending
        now = self._clock.time()
        while pending and (pending[0].done or pending[0].when <= now):
            entry = pending.popleft()
            if not entry.done:
                entry.expired = True
                entry.task.cancel()
        if pending:
            self._timer = self._clock.call_at(pending[0].when, self._expire)
