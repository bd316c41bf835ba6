"""The circuit breaker's states, driven by a fake upstream and a fake clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from daxproxy.core.errors import DynamoDBError, InternalServerError, ServiceUnavailable
from daxproxy.core.wire import Target
from daxproxy.service.breaker import Breaker, State
from daxproxy.service.metrics import Metrics
from daxproxy.service.upstream import UpstreamResponse
from tests.fakes import FakeUpstream, Sent

GET_ITEM = Target("DynamoDB_20120810", "GetItem")
OK = UpstreamResponse(200, [], b"{}")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Switch:
    """The fake upstream's behaviour: answer, fail with no answer, or answer a 5xx."""

    def __init__(self) -> None:
        self.result: UpstreamResponse | DynamoDBError = OK

    def __call__(self, sent: Sent) -> UpstreamResponse | DynamoDBError:
        return self.result


def breaker(
    failures: int = 3, cooldown: float = 5.0, metrics: Metrics | None = None
) -> tuple[Breaker, FakeUpstream, Switch, FakeClock]:
    switch, clock = Switch(), FakeClock()
    upstream = FakeUpstream(answer=switch)
    return (
        Breaker(upstream, failures=failures, cooldown=cooldown, clock=clock, observer=metrics),
        upstream,
        switch,
        clock,
    )


async def send(b: Breaker) -> UpstreamResponse:
    return await b.send(GET_ITEM, b"{}", [], retry_safe=True)


async def fails(b: Breaker) -> DynamoDBError:
    with pytest.raises(DynamoDBError) as caught:
        await send(b)
    return caught.value


def fail_fast(error: DynamoDBError) -> bool:
    return isinstance(error, ServiceUnavailable) and "circuit breaker is open" in error.message


async def test_opens_after_consecutive_failures_and_then_fails_fast() -> None:
    b, upstream, switch, _ = breaker(failures=3)
    switch.result = InternalServerError("timed out")
    for _ in range(3):
        assert not fail_fast(await fails(b))
    assert b.state is State.OPEN and b.is_open
    error = await fails(b)
    assert fail_fast(error) and error.status == 503
    assert len(upstream.sent) == 3  # the fast failure was never sent


async def test_an_answer_ends_the_run_of_failures() -> None:
    b, _, switch, _ = breaker(failures=3)
    for _ in range(3):
        switch.result = ServiceUnavailable("refused")
        await fails(b)
        await fails(b)
        switch.result = OK
        await send(b)
    assert b.state is State.CLOSED


async def test_a_5xx_answer_is_an_answer_not_a_failure() -> None:
    b, _, switch, _ = breaker(failures=2)
    switch.result = UpstreamResponse(500, [], b'{"__type":"x#InternalServerError"}')
    for _ in range(5):
        assert (await send(b)).status == 500
    assert b.state is State.CLOSED


async def test_after_the_cooldown_one_probe_closes_it_on_an_answer() -> None:
    b, upstream, switch, clock = breaker(failures=1, cooldown=5.0)
    switch.result = ServiceUnavailable("refused")
    await fails(b)
    clock.now += 4.9
    assert fail_fast(await fails(b))
    clock.now += 0.1
    assert b.state is State.HALF_OPEN
    switch.result = OK
    assert (await send(b)).status == 200
    assert b.state is State.CLOSED and not b.is_open
    assert len(upstream.sent) == 2


async def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    b, upstream, switch, clock = breaker(failures=1, cooldown=5.0)
    switch.result = ServiceUnavailable("refused")
    await fails(b)
    clock.now += 5.0
    assert not fail_fast(await fails(b))  # the probe went upstream and failed
    assert b.state is State.OPEN
    clock.now += 4.0
    assert fail_fast(await fails(b))
    clock.now += 1.0
    switch.result = OK
    await send(b)
    assert b.state is State.CLOSED
    assert len(upstream.sent) == 3


async def test_while_the_probe_is_in_flight_the_others_fail_fast() -> None:
    release = asyncio.Event()
    clock = FakeClock()

    class Slow(FakeUpstream):
        async def send(self, *args: object, **kwargs: object) -> UpstreamResponse:
            if not self.sent:
                self.sent.append(Sent(GET_ITEM, b"", [], True))
                raise ServiceUnavailable("refused")
            await release.wait()
            return OK

    b = Breaker(Slow(), failures=1, cooldown=1.0, clock=clock)
    await fails(b)
    assert b.state is State.OPEN
    clock.now += 1.0
    probe = asyncio.ensure_future(send(b))
    await asyncio.sleep(0)
    assert fail_fast(await fails(b))
    release.set()
    assert (await probe).status == 200
    assert b.state is State.CLOSED


async def test_a_cancelled_probe_lets_the_next_request_probe() -> None:
    clock = FakeClock()

    class Stalled(FakeUpstream):
        async def send(self, *args: object, **kwargs: object) -> UpstreamResponse:
            if not self.sent:
                self.sent.append(Sent(GET_ITEM, b"", [], True))
                raise ServiceUnavailable("refused")
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    b = Breaker(Stalled(), failures=1, cooldown=1.0, clock=clock)
    await fails(b)
    clock.now += 1.0
    probe = asyncio.ensure_future(send(b))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    b.upstream = FakeUpstream()
    assert (await send(b)).status == 200
    assert b.state is State.CLOSED


async def test_late_failures_of_requests_sent_before_it_opened_do_not_count() -> None:
    gate = asyncio.Event()
    clock = FakeClock()

    class Gated(FakeUpstream):
        async def send(self, *args: object, **kwargs: object) -> UpstreamResponse:
            await gate.wait()
            raise InternalServerError("timed out")

    b = Breaker(Gated(), failures=2, cooldown=5.0, clock=clock)
    late = [asyncio.ensure_future(send(b)) for _ in range(4)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*late, return_exceptions=True)
    assert b.state is State.OPEN
    clock.now += 5.0  # the cool-down ran from the first open, not from the last late failure
    assert b.state is State.HALF_OPEN


async def test_ping_asks_the_real_upstream_and_leaves_the_state_alone() -> None:
    b, upstream, switch, _ = breaker(failures=1)
    switch.result = ServiceUnavailable("refused")
    await fails(b)
    upstream.ready = True
    assert await b.ping()
    assert b.state is State.OPEN
    upstream.ready = False
    assert not await b.ping()
    await b.close()
    assert upstream.closed


async def test_logs_one_warning_when_it_opens_and_one_info_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daxproxy.service.breaker")
    b, _, switch, clock = breaker(failures=2, cooldown=1.0)
    switch.result = ServiceUnavailable("refused")
    for _ in range(2):
        await fails(b)
    for _ in range(3):  # failed probes re-open it without another warning
        clock.now += 1.0
        await fails(b)
        await fails(b)
    clock.now += 1.0
    switch.result = OK
    await send(b)
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in records] == ["WARNING", "INFO"]
    assert "circuit breaker open" in records[0][1]
    assert "circuit breaker closed" in records[1][1]


async def test_the_metrics_hear_it_open_close_and_reject() -> None:
    metrics = Metrics()
    assert metrics.registry.get_sample_value("daxproxy_upstream_breaker_open") is None
    b, _, switch, clock = breaker(failures=1, cooldown=1.0, metrics=metrics)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("daxproxy_upstream_breaker_open") == 0
    switch.result = ServiceUnavailable("refused")
    await fails(b)
    await fails(b)
    await fails(b)
    assert sample("daxproxy_upstream_breaker_open") == 1
    assert sample("daxproxy_upstream_breaker_opens_total") == 1
    assert sample("daxproxy_upstream_breaker_rejected_total", operation="GetItem") == 2
    clock.now += 1.0
    switch.result = OK
    await send(b)
    assert sample("daxproxy_upstream_breaker_open") == 0
    assert sample("daxproxy_upstream_breaker_opens_total") == 1


def test_a_breaker_needs_a_threshold() -> None:
    with pytest.raises(ValueError):
        Breaker(FakeUpstream(), failures=0, cooldown=1.0)
