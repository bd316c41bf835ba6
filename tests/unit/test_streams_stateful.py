"""Randomized and stateful, with ``coherence = "streams"``: two proxies, each with its own
caches and stream follower, in front of one :class:`~tests.fake_streams.StreamedDynamoDB`.
Once every read in flight has been answered and both followers have read their streams up
to a moment after the last write (the lag: waited for on the followers' own clocks, never
a sleep), a GetItem on either proxy gives what DynamoDB holds.

Hypothesis interleaves, on random proxies and keys: writes through a proxy, writes straight
to DynamoDB, reads, reads whose upstream answer is held (a fill in flight that a write may
overtake), and what a stream does on its own: iterators expiring, records trimmed, a shard
split, throttling, the stream not found for a moment, a 5xx.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from daxproxy.core.config import Settings
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from tests.fake_streams import StreamedDynamoDB
from tests.fakes import FakeTable, Hold
from tests.unit.test_coherence import Clock

KEYS = ("1", "2")
PROXIES = (0, 1)
TURNS = 20_000
FAULTS = (
    "LimitExceededException",
    "ResourceNotFoundException",
    "InternalServerError",
    "ExpiredIteratorException",
)


def request(operation: str, **payload: Any) -> ClientRequest:
    target = f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), orjson.dumps(payload), target)


def item(pk: str, value: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "v": {"S": value}}


async def read(p: Proxy, pk: str) -> dict[str, Any] | None:
    answer = await p.handle(request("GetItem", TableName="t", Key={"pk": {"S": pk}}))
    assert answer.status == 200, answer.body
    found: dict[str, Any] | None = orjson.loads(answer.body).get("Item")
    return found


class Ticks:
    """The followers' clock: moves only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ReadsAfterTheLagAreFresh(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.fake = StreamedDynamoDB(FakeTable("t"))
        self.values = itertools.count(1)
        self.ticks = Ticks()
        self.pending: list[tuple[Hold, asyncio.Task[Any]]] = []
        self.proxies: list[Proxy] = []
        for _ in PROXIES:
            p = build_proxy(
                Settings(upstream="http://127.0.0.1:1", coherence="streams"),
                self.fake,
                clock=Clock(),
            )
            assert p.streams is not None
            p.streams.sleep = _yield
            p.streams.clock = self.ticks
            self.proxies.append(p)
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        for p in self.proxies:
            assert p.streams is not None
            await p.streams.start()
            await read(p, "1")  # the table is learned and followed

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    @rule(p=st.sampled_from(PROXIES), pk=st.sampled_from(KEYS))
    def write_through_a_proxy(self, p: int, pk: str) -> None:
        self.ticks.now += 1
        value = str(next(self.values))
        answer = self.run(
            self.proxies[p].handle(request("PutItem", TableName="t", Item=item(pk, value)))
        )
        assert answer.status == 200

    @rule(pk=st.sampled_from(KEYS))
    def write_straight(self, pk: str) -> None:
        self.ticks.now += 1
        self.fake.put_direct("t", item(pk, str(next(self.values))))

    @rule(p=st.sampled_from(PROXIES), pk=st.sampled_from(KEYS))
    def read(self, p: int, pk: str) -> None:
        if not self.pending:  # a read could join a held fill and wait for it
            self.run(read(self.proxies[p], pk))

    @rule(p=st.sampled_from(PROXIES), pk=st.sampled_from(KEYS))
    def held_fill(self, p: int, pk: str) -> None:
        if self.pending:
            return

        async def start() -> tuple[Hold, asyncio.Task[Any]]:
            hold = self.fake.hold("GetItem")
            task = asyncio.ensure_future(read(self.proxies[p], pk))
            await asyncio.wait(
                [task, asyncio.ensure_future(hold.wait_reached())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            return hold, task

        hold, task = self.run(start())
        if task.done():  # a hit: nothing went upstream
            self.fake._holds.remove(hold)
        else:
            self.pending.append((hold, task))

    @rule(fault=st.sampled_from(FAULTS))
    def stream_fault(self, fault: str) -> None:
        self.fake.fail(fault)

    @rule()
    def iterators_expire(self) -> None:
        self.fake.expire_iterators()

    @rule()
    def records_trimmed(self) -> None:
        self.fake.trim("t")

    @rule()
    def shard_split(self) -> None:
        self.fake.split("t")

    @rule()
    def let_the_followers_run(self) -> None:
        self.run(_turns(10))

    @rule(p=st.sampled_from(PROXIES), pk=st.sampled_from(KEYS))
    def check(self, p: int, pk: str) -> None:
        self.run(self._settle())
        truth = self.fake.item("t", pk=pk)
        assert self.run(read(self.proxies[p], pk)) == truth
        assert self.run(read(self.proxies[p], pk)) == truth  # what the first stored

    async def _settle(self) -> None:
        for hold, task in self.pending:
            hold.release()
            await task
        self.pending.clear()
        self.ticks.now += 1
        mark = self.ticks.now
        for _ in range(TURNS):
            if all(_caught_up(p, mark) for p in self.proxies):
                return
            await asyncio.sleep(0)
        raise AssertionError("the followers did not catch up")

    def teardown(self) -> None:
        async def close() -> None:
            for hold, task in self.pending:
                hold.release()
                await task
            for p in self.proxies:
                assert p.streams is not None
                await p.streams.close()

        self.run(close())
        self.loop.close()


def _caught_up(p: Proxy, mark: float) -> bool:
    assert p.streams is not None
    streams = list(p.streams.followed.values())
    return bool(streams) and all(
        s.complete_at is not None and s.complete_at >= mark for s in streams
    )


async def _yield(seconds: float) -> None:
    await asyncio.sleep(0)


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_reads_after_the_lag_are_fresh() -> None:
    run_state_machine_as_test(
        ReadsAfterTheLagAreFresh,
        settings=settings(
            max_examples=200,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
