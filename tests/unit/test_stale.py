"""Stale-on-error: a miss whose upstream call fails is answered from an expired entry.

The proxy is assembled by ``build_proxy`` in front of the fake DynamoDB of
``test_metrics`` with TTLs of one millisecond, so every entry is expired (and, with
``stale_grace_millis``, still stale) a few milliseconds after it was stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from daxproxy.core.errors import InternalServerError, ServiceUnavailable
from daxproxy.core.wire import WireResponse
from daxproxy.service.proxy import Proxy
from daxproxy.service.runtime import build_proxy
from tests.unit.test_metrics import (
    ITEM,
    FakeDynamoDB,
    batch_get,
    dynamodb_error,
    get_item,
    query,
    request,
    sample,
    samples,
    settings,
)

GRACE = 60_000


def proxy(fake: FakeDynamoDB, grace: int = GRACE, **more: Any) -> Proxy:
    return build_proxy(
        settings(record_ttl_millis=1, query_ttl_millis=1, stale_grace_millis=grace, **more),
        fake.upstream,
    )


async def expire() -> None:
    await asyncio.sleep(0.005)


def headers(answer: WireResponse) -> dict[str, str]:
    return dict(answer.headers)


def body(answer: WireResponse) -> Any:
    return orjson.loads(answer.body)


async def test_a_get_item_is_served_stale_when_the_upstream_gives_no_answer() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake)
    fresh = await p.handle(get_item("1"))
    assert headers(fresh)["x-daxproxy-cache"] == "miss"
    await expire()
    fake.next_error = InternalServerError("timed out")
    answer = await p.handle(get_item("1"))
    assert answer.status == 200
    assert body(answer) == {"Item": ITEM}
    assert headers(answer)["x-daxproxy-cache"] == "stale"
    assert answer.headers[-1] == ("x-daxproxy-cache", "stale")  # last, as observers read it
    assert int(headers(answer)["x-daxproxy-stale-millis"]) >= 1
    assert headers(answer)["x-amzn-RequestId"] != headers(fresh)["x-amzn-RequestId"]
    assert p.metrics is not None
    assert sample(p.metrics, "daxproxy_stale_served_total", cache="item") == 1
    assert (
        samples(p.metrics, "daxproxy_request_duration_seconds_count")[
            (("cache", "stale"), ("operation", "GetItem"), ("protocol", "http"))
        ]
        == 1
    )


async def test_a_negative_entry_and_a_projection_are_served_stale_too() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake)
    await p.handle(get_item("1"))
    await p.handle(get_item("2"))
    await expire()
    fake.next_error = ServiceUnavailable("refused")
    answer = await p.handle(
        get_item("1", ProjectionExpression="#n", ExpressionAttributeNames={"#n": "name"})
    )
    assert body(answer) == {"Item": {"name": {"S": "Ada"}}}
    fake.next_error = ServiceUnavailable("refused")
    answer = await p.handle(get_item("2"))
    assert answer.status == 200 and body(answer) == {}
    assert headers(answer)["x-daxproxy-cache"] == "stale"


async def test_an_upstream_5xx_answer_is_replaced_but_a_4xx_is_relayed() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake)
    await p.handle(get_item("1"))
    await expire()
    fake.next_error = dynamodb_error(500, "InternalServerError")
    answer = await p.handle(get_item("1"))
    assert answer.status == 200 and headers(answer)["x-daxproxy-cache"] == "stale"
    fake.next_error = dynamodb_error(400, "ProvisionedThroughputExceededException")
    answer = await p.handle(get_item("1"))
    assert answer.status == 400 and headers(answer)["x-daxproxy-cache"] == "miss"


async def test_without_a_grace_the_failure_reaches_the_client() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake, grace=0)
    await p.handle(get_item("1"))
    await expire()
    fake.next_error = ServiceUnavailable("refused")
    answer = await p.handle(get_item("1"))
    assert answer.status == 503
    assert "x-daxproxy-stale-millis" not in headers(answer)


async def test_a_write_that_failed_leaves_nothing_stale_and_one_that_succeeded_is_current() -> None:
    fake = FakeDynamoDB()
    # The failed write holds its key for the request timeout: 1 ms, over before the retry.
    p = proxy(fake, request_timeout_millis=1)
    await p.handle(get_item("1"))
    await expire()
    put = request("PutItem", {"TableName": "t", "Item": {"pk": {"S": "1"}, "v": {"S": "new"}}})
    fake.next_error = InternalServerError("timed out")  # it may have been applied
    assert (await p.handle(put)).status == 500
    fake.next_error = ServiceUnavailable("refused")
    assert (await p.handle(get_item("1"))).status == 503
    await expire()
    assert (await p.handle(put)).status == 200
    await expire()
    fake.next_error = ServiceUnavailable("refused")
    answer = await p.handle(get_item("1"))
    assert body(answer) == {"Item": {"pk": {"S": "1"}, "v": {"S": "new"}}}


async def test_a_batch_is_served_stale_only_when_every_fetched_key_has_an_entry() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake)
    await p.handle(batch_get("1", "2"))
    await expire()
    fake.next_error = ServiceUnavailable("refused")
    answer = await p.handle(batch_get("1", "2"))
    assert answer.status == 200 and headers(answer)["x-daxproxy-cache"] == "stale"
    assert body(answer)["Responses"] == {"t": [ITEM]}
    assert body(answer)["UnprocessedKeys"] == {}
    fake.next_error = ServiceUnavailable("refused")
    answer = await p.handle(batch_get("1", "3"))  # 3 was never cached
    assert answer.status == 503
    fake.next_error = dynamodb_error(500, "InternalServerError")
    answer = await p.handle(batch_get("1", "2"))
    assert answer.status == 200 and headers(answer)["x-daxproxy-cache"] == "stale"


async def test_a_query_page_is_served_stale_exactly_as_cached() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake)
    fresh = await p.handle(query())
    await expire()
    fake.next_error = InternalServerError("timed out")
    answer = await p.handle(query())
    assert answer.status == 200 and headers(answer)["x-daxproxy-cache"] == "stale"
    assert answer.body == fresh.body
    assert p.metrics is not None
    assert sample(p.metrics, "daxproxy_stale_served_total", cache="query") == 1


async def test_a_query_page_older_than_a_write_the_proxy_saw_is_not_served_stale() -> None:
    fake = FakeDynamoDB()
    p = proxy(fake)  # mode "dax": the write leaves fresh pages alone, as DAX does
    await p.handle(query())
    put = request("PutItem", {"TableName": "t", "Item": {"pk": {"S": "1"}}})
    assert (await p.handle(put)).status == 200
    await expire()
    fake.next_error = InternalServerError("timed out")
    assert (await p.handle(query())).status == 500
