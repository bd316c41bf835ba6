"""One deadline that moves often, kept with one lazily re-armed loop timer.

A client connection's deadline moves with every request (the read clock from its first
byte, the idle clock after its answer); cancelling and arming a loop timer each time would
cost a timer per request. :class:`Deadline` keeps one timer: moving the deadline later only
notes it, and the timer, when it fires early, arms itself again at the deadline now due;
moving it earlier (or arming it the first time) arms the timer at once. Contract:
:meth:`Deadline.set` moves it, :meth:`Deadline.clear` stops it (the timer, if armed, fires
and finds nothing due), :meth:`Deadline.cancel` also cancels the timer (the connection is
gone); ``due`` is called once the deadline has passed, within :data:`SLACK` (a loop may run
a timer a little before its time), and the deadline is then clear.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

SLACK = 0.001  # a timer the loop runs this close to its deadline counts as on time


class Deadline:
    __slots__ = ("_at", "_due", "_loop", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, due: Callable[[], None]) -> None:
        self._loop = loop
        self._due = due
        self._at = 0.0  # 0: none
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def set(self, when: float) -> None:
        self._at = when
        timer = self._timer
        if timer is None or when < self._timer_at:
            if timer is not None:
                timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._fire)

    def clear(self) -> None:
        self._at = 0.0

    def cancel(self) -> None:
        self._at = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        at = self._at
        if not at:
            return
        if at - self._loop.time() > SLACK:  # moved since armed: wait on
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._fire)
            return
        self._at = 0.0
        self._due()
