"""One timer for all upstream attempts' deadlines, driven by a hand-wound clock.

Proves :class:`Deadlines` behaves as ``asyncio.timeout`` around each await: past its limit
an await raises TimeoutError and its task goes on uncancelled; an await that finished is
never cancelled later; a cancellation from elsewhere stays one; the one timer is armed at
the earliest pending deadline and what finished is let go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from daxproxy.service.deadlines import Deadlines


class Clock:
    """``time`` and ``call_at`` of a loop whose time moves only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        self.timers.append((when, callback))
        return asyncio.get_running_loop().call_at(1e12, lambda: None)  # never fires

    async def advance(self, seconds: float) -> None:
        """Move time on and run the timer if it is due; let the tasks react."""
        self.now += seconds
        if self.timers and self.timers[-1][0] <= self.now:
            _, callback = self.timers[-1]
            callback()
        for _ in range(5):
            await asyncio.sleep(0)


async def start(
    deadlines: Deadlines, answer: asyncio.Future[str]
) -> tuple[asyncio.Task[str], list[BaseException]]:
    """A task awaiting ``answer`` within the limit, that records what it raised, then goes
    on to await once more (so a cancellation left on it would show)."""
    raised: list[BaseException] = []

    async def run() -> str:
        try:
            return await deadlines.bound(answer)
        except (TimeoutError, asyncio.CancelledError) as exc:
            raised.append(exc)
            await asyncio.sleep(0)
            return "went on"

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    return task, raised


async def test_an_await_past_its_limit_times_out_and_its_task_goes_on() -> None:
    clock = Clock()
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, clock)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task, raised = await start(deadlines, answer)
    assert clock.timers[0][0] == 102.0
    await clock.advance(1.9)
    assert not task.done()
    await clock.advance(0.2)
    assert await task == "went on"
    assert [type(e) for e in raised] == [TimeoutError]
    assert task.cancelling() == 0 and answer.cancelled()


async def test_an_await_that_finished_is_never_cancelled_later() -> None:
    clock = Clock()
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, clock)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    later: asyncio.Future[str] = loop.create_future()

    async def run() -> str:
        value = await deadlines.bound(answer)
        return value + await later  # the task goes on to wait for something else

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    answer.set_result("answered, ")
    await asyncio.sleep(0)
    await clock.advance(2.5)  # the deadline passes while the task waits on something else
    later.set_result("then more")
    assert await task == "answered, then more"
    assert len(deadlines) == 0


async def test_what_finished_is_let_go() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, Clock())
    for _ in range(3):
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        answer.set_result("answered")
        assert await deadlines.bound(answer) == "answered"
    assert len(deadlines) == 1  # only the last, finished, until the next starts


async def test_each_deadline_fires_in_turn_on_one_timer() -> None:
    clock = Clock()
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, clock)
    loop = asyncio.get_running_loop()
    answers: list[asyncio.Future[str]] = [loop.create_future() for _ in range(3)]
    started = []
    for n, answer in enumerate(answers):
        clock.now = 100.0 + n  # set at 100, 101 and 102
        started.append(await start(deadlines, answer))
    assert [when for when, _ in clock.timers] == [102.0]  # one timer, at the first
    answers[1].set_result("answered")
    await asyncio.sleep(0)
    await clock.advance(0.0)  # now 102: the first expires; the third is next
    assert [type(e) for e in started[0][1]] == [TimeoutError]
    assert [when for when, _ in clock.timers] == [102.0, 104.0]
    await clock.advance(2.0)
    assert [type(e) for e in started[2][1]] == [TimeoutError]
    assert started[1][1] == [] and await started[1][0] == "answered"
    assert len(deadlines) == 0 and len(clock.timers) == 2  # nothing pending, no timer


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    clock = Clock()
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, clock)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task, raised = await start(deadlines, answer)
    task.cancel()
    await asyncio.sleep(0)
    assert [type(e) for e in raised] == [asyncio.CancelledError]


async def test_expired_and_cancelled_from_elsewhere_is_a_cancellation() -> None:
    clock = Clock()
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, clock)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task, raised = await start(deadlines, answer)
    clock.now += 3.0
    clock.timers[-1][1]()  # the deadline passes...
    task.cancel()  # ...and someone else cancels too, before the task runs
    await asyncio.sleep(0)
    assert [type(e) for e in raised] == [asyncio.CancelledError]


async def test_it_must_run_in_a_task() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), 2.0, Clock())
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[str] = loop.create_future()

    def outside_any_task() -> None:
        coro = deadlines.bound(loop.create_future())
        try:
            coro.send(None)
        except Exception as exc:
            refused.set_result(f"{type(exc).__name__}: {exc}")

    loop.call_soon(outside_any_task)
    assert await refused == "RuntimeError: Deadlines.bound must run inside a task"
