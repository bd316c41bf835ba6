"""``--coherence streams`` against moto's DynamoDB Streams API (issue 15): a write made
straight at moto, or through another proxy, is served new through the proxy once its
stream record is applied. Each wait is for the proxy's own count of records applied
(``daxproxy_stream_records_applied_total``), bounded, never a fixed sleep.

Where moto differs from DynamoDB (pinned here or covered by the fake in
tests/unit/test_streams.py): moto's records carry ``ApproximateCreationDateTime`` as
DynamoDB does (epoch seconds); moto never expires or trims an iterator, never splits a
shard and never throttles (the unit tests cover those); an iterator moto does not know
gets an HTML 500, not ExpiredIteratorException; and a stream disabled at moto keeps its
``LatestStreamArn`` and goes on recording, while DescribeTable drops its
``StreamSpecification``, which is what the proxy reads.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import PK_SK_TABLE, CountedStack, ProxyProcess, get, serving
from tests.integration.harness import dynamodb_client as client
from tests.integration.test_metrics import of, scrape

WITHIN = 20.0  # seconds a change may take to be applied before the test fails
ENABLE = (
    "aws dynamodb update-table --table-name {name} "
    "--stream-specification StreamEnabled=true,StreamViewType=KEYS_ONLY"
)


class Stack(CountedStack):
    def setup(self) -> None:
        self.a = self.start_proxy("--coherence", "streams", "--admin")
        self.b = self.start_proxy("--coherence", "streams")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


def applied(proxy: ProxyProcess) -> float:
    return of(scrape(proxy), "daxproxy_stream_records_applied_total").get((), 0.0)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WITHIN} s: {what}")
        time.sleep(0.02)


def new_table(stack: Stack, *, stream: bool = True) -> str:
    name = f"streams-{uuid.uuid4().hex[:8]}"
    spec = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}
    client(stack.moto.url).create_table(TableName=name, **PK_SK_TABLE, **(spec if stream else {}))
    return name


def key(pk: str = "1") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}


def item(v: str, pk: str = "1") -> dict[str, Any]:
    return {**key(pk), "v": {"S": v}}


def read(proxy: ProxyProcess, table: str, pk: str = "1") -> tuple[Any, str]:
    answer = client(proxy.url).get_item(TableName=table, Key=key(pk))
    cache = answer["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"]
    return answer.get("Item"), cache


def followed(proxy: ProxyProcess, table: str) -> None:
    """Read until the proxy follows the table's stream and has the item cached."""
    wait_for(
        lambda: (
            read(proxy, table)
            and (("table", table),) in of(scrape(proxy), "daxproxy_stream_seconds_behind")
        ),
        f"{table} followed",
    )
    wait_for(lambda: read(proxy, table)[1] == "hit", f"{table}'s item cached")


def test_a_write_straight_at_moto_is_served_new(stack: Stack) -> None:
    table = new_table(stack)
    moto = client(stack.moto.url)
    moto.put_item(TableName=table, Item=item("old"))
    followed(stack.a, table)
    assert read(stack.a, table) == (item("old"), "hit")
    before = applied(stack.a)
    moto.put_item(TableName=table, Item=item("new"))
    wait_for(lambda: applied(stack.a) > before, "the record applied")
    assert read(stack.a, table) == (item("new"), "miss")
    lag = of(scrape(stack.a), "daxproxy_stream_lag_seconds_count")
    assert lag[()] >= 1  # moto's ApproximateCreationDateTime is read
    status, body = get(f"{stack.a.url}/admin/caches")
    arn = client(stack.moto.url).describe_table(TableName=table)["Table"]["TableArn"]
    view = json.loads(body)["streams"][arn]
    assert status == 200 and view["followed"] is True and view["lag_seconds"] >= 0
    assert "Traceback" not in stack.a.log()


def test_a_query_page_is_dropped_by_a_write_straight_at_moto(stack: Stack) -> None:
    table = new_table(stack)
    moto = client(stack.moto.url)
    moto.put_item(TableName=table, Item=item("old"))
    followed(stack.a, table)
    proxy = client(stack.a.url)

    def query() -> tuple[list[Any], str]:
        answer = proxy.query(
            TableName=table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "1"}},
        )
        return answer["Items"], answer["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"]

    query()
    assert query() == ([item("old")], "hit")
    before = applied(stack.a)
    moto.put_item(TableName=table, Item={**item("new"), "sk": {"N": "2"}})
    wait_for(lambda: applied(stack.a) > before, "the record applied")
    items, cache = query()
    assert cache == "miss" and items == [item("old"), {**item("new"), "sk": {"N": "2"}}]


def test_a_write_through_one_proxy_is_seen_by_the_other(stack: Stack) -> None:
    table = new_table(stack)
    client(stack.moto.url).put_item(TableName=table, Item=item("old"))
    followed(stack.b, table)
    before = applied(stack.b)
    client(stack.a.url).put_item(TableName=table, Item=item("new"))
    wait_for(lambda: applied(stack.b) > before, "the record applied in the other proxy")
    assert read(stack.b, table) == (item("new"), "miss")


def test_a_table_without_a_stream_is_served_as_today_with_the_warning(stack: Stack) -> None:
    table = new_table(stack, stream=False)
    client(stack.moto.url).put_item(TableName=table, Item=item("old"))
    assert read(stack.a, table) == (item("old"), "miss")
    assert read(stack.a, table) == (item("old"), "hit")
    log = stack.a.log()
    assert log.count(ENABLE.format(name=table)) == 1
    assert log[: log.index(ENABLE.format(name=table))].rsplit("\n", 1)[-1].count("WARNING") == 1
    assert of(scrape(stack.a), "daxproxy_stream_tables_without_stream")[()] >= 1
