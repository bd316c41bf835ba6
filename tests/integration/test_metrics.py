"""GET /metrics of the real proxy process, after a known sequence: every count exact.

The proxies here are the test's own (moto, a counting forwarder in front of it, proxies in
front of that), so no other test's traffic shows in their counts. The forwarder's count of
each upstream operation is the truth the upstream latency histogram must match.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from daxproxy import __version__
from daxproxy.service.embedded import free_port
from tests.integration.harness import PK_SK_TABLE, CountedStack, ProxyProcess, get, serving
from tests.integration.harness import dynamodb_client as client

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Stack(CountedStack):
    def setup(self) -> None:
        self.proxy = self.start_proxy()
        self.per_table = self.start_proxy("--metrics-per-table")
        # Nothing listens there: every upstream call is refused.
        self.refused = self.start_proxy(upstream=f"http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


def new_table(stack: Stack) -> str:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    client(stack.moto.url).create_table(TableName=name, **PK_SK_TABLE)
    return name


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}


def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return str(raised.value.response["Error"]["Code"])


def scrape(proxy: ProxyProcess) -> Samples:
    """Every sample of the proxy's /metrics, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=5) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def of(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def post(proxy: ProxyProcess, target: str, body: bytes) -> int:
    request = urllib.request.Request(
        proxy.url, data=body, headers={"X-Amz-Target": target}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


@dataclass(frozen=True)
class AfterSequence:
    samples: Samples  # the proxy's /metrics
    upstream: dict[str, int]  # the forwarder's count of each upstream operation


@pytest.fixture(scope="module")
def after(stack: Stack) -> AfterSequence:
    """A known sequence of hits, misses, bypasses, client errors and a fault."""
    table = new_table(stack)
    stack.forwarder.reset()
    c = client(stack.proxy.url)
    c.put_item(TableName=table, Item={**key("a"), "v": {"S": "1"}})  # bypass: a write
    c.get_item(TableName=table, Key=key("a"))  # hit: written through
    c.get_item(TableName=table, Key=key("b"))  # miss: no such item, cached as such
    c.get_item(TableName=table, Key=key("b"))  # hit
    c.get_item(TableName=table, Key=key("a"), ConsistentRead=True)  # bypass
    keys = [key("a"), key("b"), key("c")]
    c.batch_get_item(RequestItems={table: {"Keys": keys}})  # miss: 2 keys hit, 1 missed
    c.describe_table(TableName=table)  # bypass
    in_a = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
    c.query(TableName=table, **in_a)  # miss
    c.query(TableName=table, **in_a)  # hit
    c.scan(TableName=table)  # miss
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    assert error_code(lambda: c.get_item(TableName=missing, Key=key("a"))) == (
        "ResourceNotFoundException"
    )
    condition_fails = {"ConditionExpression": "attribute_not_exists(pk)"}
    assert error_code(lambda: c.put_item(TableName=table, Item=key("a"), **condition_fails)) == (
        "ConditionalCheckFailedException"
    )
    stack.forwarder.faults.fail_next["GetItem"] = 1
    assert error_code(lambda: c.get_item(TableName=table, Key=key("d"))) == "InternalServerError"
    assert post(stack.proxy, "DynamoDB_20120810.GetItem", b"not json") == 400
    assert post(stack.proxy, "Nope.Nothing", b"{}") == 400
    return AfterSequence(scrape(stack.proxy), dict(stack.forwarder.counts))


ONE = ()  # the labels of a sample without any
ITEM, QUERY = (("cache", "item"),), (("cache", "query"),)


def test_requests_and_errors_by_operation(after: AfterSequence) -> None:
    samples = after.samples
    assert of(samples, "daxproxy_requests_total") == {
        (("operation", "BatchGetItem"), ("protocol", "http")): 1,
        (("operation", "DescribeTable"), ("protocol", "http")): 1,
        (("operation", "GetItem"), ("protocol", "http")): 7,
        (("operation", "PutItem"), ("protocol", "http")): 2,
        (("operation", "Query"), ("protocol", "http")): 2,
        (("operation", "Scan"), ("protocol", "http")): 1,
        (("operation", "Unknown"), ("protocol", "http")): 1,
    }
    assert of(samples, "daxproxy_request_errors_total") == {
        (
            ("class", "client"),
            ("operation", "GetItem"),
            ("protocol", "http"),
        ): 2,  # no such table; not JSON
        (
            ("class", "client"),
            ("operation", "PutItem"),
            ("protocol", "http"),
        ): 1,  # the failed condition
        (("class", "client"), ("operation", "Unknown"), ("protocol", "http")): 1,
        (
            ("class", "server"),
            ("operation", "GetItem"),
            ("protocol", "http"),
        ): 1,  # the upstream's 500
    }
    assert of(samples, "daxproxy_throttled_requests_total") == {}


def test_latency_by_operation_and_cache_outcome(after: AfterSequence) -> None:
    assert of(after.samples, "daxproxy_request_duration_seconds_count") == {
        (("cache", "bypass"), ("operation", "DescribeTable"), ("protocol", "http")): 1,
        (("cache", "bypass"), ("operation", "GetItem"), ("protocol", "http")): 3,
        (("cache", "bypass"), ("operation", "PutItem"), ("protocol", "http")): 2,
        (("cache", "bypass"), ("operation", "Unknown"), ("protocol", "http")): 1,
        (("cache", "hit"), ("operation", "GetItem"), ("protocol", "http")): 2,
        (("cache", "hit"), ("operation", "Query"), ("protocol", "http")): 1,
        (("cache", "miss"), ("operation", "BatchGetItem"), ("protocol", "http")): 1,
        (("cache", "miss"), ("operation", "GetItem"), ("protocol", "http")): 2,  # b, and d's 500
        (("cache", "miss"), ("operation", "Query"), ("protocol", "http")): 1,
        (("cache", "miss"), ("operation", "Scan"), ("protocol", "http")): 1,
    }
    buckets = of(after.samples, "daxproxy_request_duration_seconds_bucket")
    assert (
        buckets[("cache", "hit"), ("le", "+Inf"), ("operation", "GetItem"), ("protocol", "http")]
        == 2
    )


def test_cache_lookups_and_contents(after: AfterSequence) -> None:
    samples = after.samples
    assert samples["daxproxy_item_cache_hits_total", ONE] == 4  # a, b, then a and b
    assert samples["daxproxy_item_cache_misses_total", ONE] == 3  # b, c, d
    assert samples["daxproxy_query_cache_hits_total", ONE] == 1
    assert samples["daxproxy_query_cache_misses_total", ONE] == 1
    assert samples["daxproxy_scan_cache_hits_total", ONE] == 0
    assert samples["daxproxy_scan_cache_misses_total", ONE] == 1
    assert samples["daxproxy_cache_entries", ITEM] == 3  # a, and "no such item" for b and c
    assert samples["daxproxy_cache_entries", QUERY] == 2
    for cache in (ITEM, QUERY):
        held = samples["daxproxy_cache_bytes", cache]
        budget = samples["daxproxy_cache_max_bytes", cache]
        assert 0 < held < budget
        assert samples["daxproxy_cache_memory_utilization_ratio", cache] == pytest.approx(
            held / budget
        )
        assert samples["daxproxy_cache_evicted_bytes_total", cache] == 0
    assert samples["daxproxy_cache_max_bytes", ITEM] == 256 * 1024 * 1024
    evictions = of(samples, "daxproxy_cache_evictions_total")
    assert evictions == {
        (("cache", cache), ("reason", reason)): 0
        for cache in ("item", "query")
        for reason in ("size", "ttl", "write", "table")
    }


def test_upstream_latency_and_the_state_gauges(after: AfterSequence) -> None:
    samples = after.samples
    # Every upstream request the forwarder saw, and only those, was timed.
    timed = of(samples, "daxproxy_upstream_request_duration_seconds_count")
    assert timed == {(("operation", op),): n for op, n in after.upstream.items()}
    assert after.upstream["GetItem"] == 4  # b, a consistent, the missing table, d
    assert of(samples, "daxproxy_upstream_failures_total") == {}
    assert samples["daxproxy_requests_in_flight", ONE] == 0
    assert samples["daxproxy_client_connections", ONE] >= 1
    assert samples["daxproxy_build_info", (("version", __version__),)] == 1
    # No table label without --metrics-per-table.
    assert of(samples, "daxproxy_table_requests_total") == {}
    assert all("table" not in dict(labels) for _, labels in samples)


def test_an_upstream_that_refuses_is_a_server_fault(stack: Stack) -> None:
    c = client(stack.refused.url)
    assert error_code(lambda: c.get_item(TableName="t", Key=key("a"))) == "ServiceUnavailable"
    samples = scrape(stack.refused)
    assert of(samples, "daxproxy_request_errors_total") == {
        (("class", "server"), ("operation", "GetItem"), ("protocol", "http")): 1
    }
    # The table's key schema first (a DescribeTable), then the GetItem itself, forwarded.
    assert of(samples, "daxproxy_upstream_failures_total") == {
        (("operation", "DescribeTable"), ("reason", "connection")): 1,
        (("operation", "GetItem"), ("reason", "connection")): 1,
    }
    assert of(samples, "daxproxy_upstream_request_duration_seconds_count") == {}
    assert of(samples, "daxproxy_request_duration_seconds_count") == {
        (("cache", "bypass"), ("operation", "GetItem"), ("protocol", "http")): 1
    }


def test_requests_per_table_when_asked(stack: Stack) -> None:
    table, other = new_table(stack), new_table(stack)
    c = client(stack.per_table.url)
    c.get_item(TableName=table, Key=key("a"))  # miss
    c.get_item(TableName=table, Key=key("a"))  # hit
    c.batch_get_item(RequestItems={table: {"Keys": [key("a")]}, other: {"Keys": [key("a")]}})
    c.list_tables()
    samples = scrape(stack.per_table)
    assert of(samples, "daxproxy_table_requests_total") == {
        (("cache", "miss"), ("operation", "GetItem"), ("protocol", "http"), ("table", table)): 1,
        (("cache", "hit"), ("operation", "GetItem"), ("protocol", "http"), ("table", table)): 1,
        # Several tables in one request count under "".
        (("cache", "miss"), ("operation", "BatchGetItem"), ("protocol", "http"), ("table", "")): 1,
        (("cache", "bypass"), ("operation", "ListTables"), ("protocol", "http"), ("table", "")): 1,
    }
    assert of(samples, "daxproxy_requests_total") == {
        (("operation", "BatchGetItem"), ("protocol", "http")): 1,
        (("operation", "GetItem"), ("protocol", "http")): 2,
        (("operation", "ListTables"), ("protocol", "http")): 1,
    }


def test_the_metrics_route_is_not_dynamodb(stack: Stack) -> None:
    status, _ = get(f"{stack.refused.url}/metrics")
    assert status == 200
    before = of(scrape(stack.refused), "daxproxy_requests_total")
    for _ in range(3):
        get(f"{stack.refused.url}/metrics")
    assert of(scrape(stack.refused), "daxproxy_requests_total") == before
