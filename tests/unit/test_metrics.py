"""Metrics and observers with a fake upstream: what each request counts, exactly.

The proxy is assembled by ``build_proxy`` as in production, in front of a fake DynamoDB
that knows one table ``t`` (hash key ``pk``) holding the item ``pk = "1"``; each test
drives a known sequence and reads the registry's samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from daxproxy.core.config import Endpoints, Settings
from daxproxy.core.errors import DynamoDBError, ServiceUnavailable
from daxproxy.core.wire import Headers, Target
from daxproxy.edge.server import listening
from daxproxy.service.dax_calls import DaxRequest
from daxproxy.service.embedded import free_port
from daxproxy.service.metrics import BUCKETS, Metrics
from daxproxy.service.observe import Outcome
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.signing import LOCAL_CREDENTIALS, Signer, StaticCredentials
from daxproxy.service.upstream import HttpUpstream, UpstreamResponse
from tests.fakes import FakeUpstream, Sent

TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
DESCRIPTION = {
    "Table": {
        "TableName": "t",
        "TableArn": TABLE_ARN,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    }
}
ITEM = {"pk": {"S": "1"}, "name": {"S": "Ada"}}


def dynamodb_error(status: int, code: str) -> UpstreamResponse:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
    return UpstreamResponse(status, [], orjson.dumps(body))


class FakeDynamoDB:
    """Answers DescribeTable, GetItem, BatchGetItem, Query and Scan for table ``t``; a
    request for any other table is a ResourceNotFoundException. ``next_error``, when set,
    is the answer to the next request whatever it is."""

    def __init__(self) -> None:
        self.next_error: UpstreamResponse | DynamoDBError | None = None
        self.upstream = FakeUpstream(answer=self.answer)

    def answer(self, sent: Sent) -> UpstreamResponse | DynamoDBError:
        if self.next_error is not None:
            error, self.next_error = self.next_error, None
            return error
        payload = orjson.loads(sent.body)
        tables = payload.get("RequestItems") or (
            {payload["TableName"]: None} if "TableName" in payload else {}
        )
        if any(table not in ("t", TABLE_ARN) for table in tables):
            return dynamodb_error(400, "ResourceNotFoundException")
        operation = sent.target.operation
        if operation == "DescribeTable":
            body: dict[str, Any] = DESCRIPTION
        elif operation == "GetItem":
            body = {"Item": ITEM} if payload["Key"] == {"pk": {"S": "1"}} else {}
        elif operation == "BatchGetItem":
            keys = payload["RequestItems"]["t"]["Keys"]
            body = {"Responses": {"t": [ITEM] if {"pk": {"S": "1"}} in keys else []}}
        else:
            body = {"Items": [], "Count": 0, "ScannedCount": 0}
        return UpstreamResponse(200, [("x-amzn-RequestId", "UPSTREAM")], orjson.dumps(body))


def request(operation: str, payload: object, *, target: str | None = None) -> ClientRequest:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    target = target or f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), body, target)


def get_item(pk: str, table: str = "t", **more: object) -> ClientRequest:
    return request("GetItem", {"TableName": table, "Key": {"pk": {"S": pk}}, **more})


def batch_get(*pks: str) -> ClientRequest:
    keys = [{"pk": {"S": pk}} for pk in pks]
    return request("BatchGetItem", {"RequestItems": {"t": {"Keys": keys}}})


def query() -> ClientRequest:
    values = {":p": {"S": "1"}}
    return request(
        "Query",
        {
            "TableName": "t",
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": values,
        },
    )


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def observed(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of one name, by its sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name
    }


def settings(**more: Any) -> Settings:
    return Settings(upstream="http://127.0.0.1:1", **more)


async def test_a_known_sequence_counts_exactly() -> None:
    fake = FakeDynamoDB()
    proxy = build_proxy(settings(), fake.upstream)
    metrics = proxy.metrics
    assert metrics is not None
    sequence = [
        (get_item("1"), 200, "miss"),
        (get_item("1"), 200, "hit"),
        (get_item("2"), 200, "miss"),  # "no such item" is cached too
        (get_item("1", ConsistentRead=True), 200, "bypass"),
        (batch_get("1", "2", "3", "4"), 200, "miss"),  # 2 hits, 2 misses
        (batch_get("1", "3"), 200, "hit"),
        (query(), 200, "miss"),
        (query(), 200, "hit"),
        (request("Scan", {"TableName": "t"}), 200, "miss"),
        (request("DescribeTable", {"TableName": "t"}), 200, "bypass"),
        (get_item("1", table="missing"), 400, "bypass"),  # cannot be described: forwarded
        (get_item("1", Nonsense=True), 200, "bypass"),  # uncacheable: DynamoDB's answer
        (request("GetItem", b"not json"), 400, "bypass"),
        (request("Foo", {}, target="Nope.Foo"), 400, "bypass"),
        (request("SomeFutureOperation", {}), 200, "bypass"),
    ]
    for client_request, status, cache in sequence:
        answer = await proxy.handle(client_request)
        assert answer.status == status
        assert dict(answer.headers).get("x-daxproxy-cache", "bypass") == cache
    # A fault and a throttle from upstream, on the misses' path: the fault's answer is the
    # proxy's own error, which carries no cache label (bypass); the throttle is relayed.
    fake.next_error = ServiceUnavailable("down")
    assert (await proxy.handle(get_item("5"))).status == 503
    fake.next_error = dynamodb_error(400, "ProvisionedThroughputExceededException")
    assert (await proxy.handle(get_item("6"))).status == 400

    assert samples(metrics, "daxproxy_requests_total") == {
        (("operation", "BatchGetItem"), ("protocol", "http")): 2,
        (("operation", "DescribeTable"), ("protocol", "http")): 1,
        (("operation", "GetItem"), ("protocol", "http")): 9,
        (("operation", "Query"), ("protocol", "http")): 2,
        (("operation", "Scan"), ("protocol", "http")): 1,
        (("operation", "Unknown"), ("protocol", "http")): 2,
    }
    assert samples(metrics, "daxproxy_request_errors_total") == {
        (("class", "client"), ("operation", "GetItem"), ("protocol", "http")): 3,
        (("class", "client"), ("operation", "Unknown"), ("protocol", "http")): 1,
        (("class", "server"), ("operation", "GetItem"), ("protocol", "http")): 1,
    }
    assert samples(metrics, "daxproxy_throttled_requests_total") == {
        (("operation", "GetItem"), ("protocol", "http")): 1
    }
    assert samples(metrics, "daxproxy_request_duration_seconds_count") == {
        (("cache", "bypass"), ("operation", "DescribeTable"), ("protocol", "http")): 1,
        (("cache", "bypass"), ("operation", "GetItem"), ("protocol", "http")): 5,
        (("cache", "bypass"), ("operation", "Unknown"), ("protocol", "http")): 2,
        (("cache", "hit"), ("operation", "BatchGetItem"), ("protocol", "http")): 1,
        (("cache", "hit"), ("operation", "GetItem"), ("protocol", "http")): 1,
        (("cache", "hit"), ("operation", "Query"), ("protocol", "http")): 1,
        (("cache", "miss"), ("operation", "BatchGetItem"), ("protocol", "http")): 1,
        (("cache", "miss"), ("operation", "GetItem"), ("protocol", "http")): 3,
        (("cache", "miss"), ("operation", "Query"), ("protocol", "http")): 1,
        (("cache", "miss"), ("operation", "Scan"), ("protocol", "http")): 1,
    }
    # Per key looked up, as DAX counts them; the bypasses looked nothing up.
    assert sample(metrics, "daxproxy_item_cache_hits_total") == 1 + 2 + 2
    assert sample(metrics, "daxproxy_item_cache_misses_total") == 2 + 2 + 2
    assert sample(metrics, "daxproxy_query_cache_hits_total") == 1
    assert sample(metrics, "daxproxy_query_cache_misses_total") == 1
    assert sample(metrics, "daxproxy_scan_cache_hits_total") == 0
    assert sample(metrics, "daxproxy_scan_cache_misses_total") == 1
    assert sample(metrics, "daxproxy_cache_entries", cache="item") == 4  # 1, 2, 3, 4
    assert sample(metrics, "daxproxy_cache_entries", cache="query") == 2
    for cache in ("item", "query"):
        held = sample(metrics, "daxproxy_cache_bytes", cache=cache)
        budget = sample(metrics, "daxproxy_cache_max_bytes", cache=cache)
        assert held and budget
        assert sample(metrics, "daxproxy_cache_memory_utilization_ratio", cache=cache) == (
            held / budget
        )
    assert sample(metrics, "daxproxy_requests_in_flight") == 0
    assert sample(metrics, "daxproxy_build_info", version="0.1.0") == 1
    assert samples(metrics, "daxproxy_table_requests_total") == {}  # off by default


async def test_requests_in_flight_are_read_while_they_run() -> None:
    release = asyncio.Event()

    class SlowUpstream(FakeUpstream):
        async def send(
            self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
        ) -> UpstreamResponse:
            await release.wait()
            return await super().send(target, body, headers, retry_safe=retry_safe)

    proxy = build_proxy(settings(), SlowUpstream())
    assert proxy.metrics is not None
    running = [asyncio.create_task(proxy.handle(request("ListTables", {}))) for _ in range(3)]
    await asyncio.sleep(0)
    assert sample(proxy.metrics, "daxproxy_requests_in_flight") == 3
    release.set()
    await asyncio.gather(*running)
    assert sample(proxy.metrics, "daxproxy_requests_in_flight") == 0


async def test_evictions_are_read_from_the_caches_by_reason() -> None:
    fake = FakeDynamoDB()
    proxy = build_proxy(settings(), fake.upstream)
    metrics = proxy.metrics
    assert metrics is not None and proxy.admin is not None
    await proxy.handle(get_item("1"))
    await proxy.handle(get_item("2"))
    await proxy.admin.invalidate({"table": "t", "key": {"pk": {"S": "1"}}})
    await proxy.admin.invalidate({"all": True})
    assert samples(metrics, "daxproxy_cache_evictions_total") == {
        (("cache", cache), ("reason", reason)): (
            1 if (cache, reason) in {("item", "write"), ("item", "table")} else 0
        )
        for cache in ("item", "query")
        for reason in ("size", "ttl", "write", "table")
    }
    evicted = proxy.admin.stats()["item_cache"]["evicted_bytes"]
    assert evicted > 0
    assert sample(metrics, "daxproxy_cache_evicted_bytes_total", cache="item") == evicted
    assert sample(metrics, "daxproxy_cache_entries", cache="item") == 0


async def test_only_caches_that_are_on_are_reported() -> None:
    proxy = build_proxy(settings(query_ttl_millis=0), FakeDynamoDB().upstream)
    assert proxy.metrics is not None
    assert samples(proxy.metrics, "daxproxy_cache_entries") == {(("cache", "item"),): 0}
    assert sample(proxy.metrics, "daxproxy_query_cache_hits_total") is None
    off = build_proxy(settings(item_cache_max_bytes=0, query_ttl_millis=0), FakeUpstream())
    assert off.metrics is not None
    assert samples(off.metrics, "daxproxy_cache_bytes") == {}
    assert sample(off.metrics, "daxproxy_item_cache_hits_total") is None
    await off.handle(get_item("1"))
    assert sample(off.metrics, "daxproxy_requests_total", operation="GetItem", protocol="http") == 1


async def test_per_table_requests_only_when_asked() -> None:
    proxy = build_proxy(settings(metrics_per_table=True), FakeDynamoDB().upstream)
    metrics = proxy.metrics
    assert metrics is not None
    await proxy.handle(get_item("1"))
    await proxy.handle(get_item("1", table=TABLE_ARN))  # an ARN counts under the name
    await proxy.handle(batch_get("1"))
    await proxy.handle(request("ListTables", {}))
    two_tables = {"RequestItems": {"t": {"Keys": [{"pk": {"S": "1"}}]}, "u": {"Keys": []}}}
    await proxy.handle(request("BatchGetItem", two_tables))
    assert samples(metrics, "daxproxy_table_requests_total") == {
        (("cache", "miss"), ("operation", "GetItem"), ("protocol", "http"), ("table", "t")): 1,
        (("cache", "hit"), ("operation", "GetItem"), ("protocol", "http"), ("table", "t")): 1,
        (("cache", "hit"), ("operation", "BatchGetItem"), ("protocol", "http"), ("table", "t")): 1,
        (("cache", "bypass"), ("operation", "ListTables"), ("protocol", "http"), ("table", "")): 1,
        (
            ("cache", "bypass"),
            ("operation", "BatchGetItem"),
            ("protocol", "http"),
            ("table", ""),
        ): 1,
    }
    # Off: no table label anywhere.
    plain = build_proxy(settings(), FakeDynamoDB().upstream)
    assert plain.metrics is not None
    await plain.handle(get_item("1"))
    families = list(plain.metrics.registry.collect())
    assert all("table" not in s.labels for f in families for s in f.samples)


def dax(client_request: ClientRequest) -> DaxRequest:
    """The same request as a DAX connection's call hands it to the proxy."""
    assert client_request.target is not None
    return DaxRequest(client_request.body, client_request.target, None)


@pytest.mark.parametrize("observed", [False, True], ids=["told directly", "with observers"])
async def test_each_request_is_counted_under_the_protocol_its_client_spoke(
    observed: bool,
) -> None:
    """Both ways the metrics hear of a request (a direct call, or an Outcome when there are
    other observers) carry the protocol; the two protocols' counts stay apart."""
    recorder = Recorder()
    proxy = build_proxy(settings(metrics_per_table=True), FakeDynamoDB().upstream)
    metrics = proxy.metrics
    assert metrics is not None
    if observed:
        proxy.add_observer(recorder)
    await proxy.handle(get_item("1"))  # HTTP's miss
    await proxy.handle(dax(get_item("1")))  # DAX's hit on the entry HTTP filled
    await proxy.handle(dax(get_item("1", table="missing")))
    await proxy.handle(dax(request("GetItem", b"{")))
    assert samples(metrics, "daxproxy_requests_total") == {
        (("operation", "GetItem"), ("protocol", "dax")): 3,
        (("operation", "GetItem"), ("protocol", "http")): 1,
    }
    assert samples(metrics, "daxproxy_request_duration_seconds_count") == {
        (("cache", "bypass"), ("operation", "GetItem"), ("protocol", "dax")): 2,
        (("cache", "hit"), ("operation", "GetItem"), ("protocol", "dax")): 1,
        (("cache", "miss"), ("operation", "GetItem"), ("protocol", "http")): 1,
    }
    assert samples(metrics, "daxproxy_request_errors_total") == {
        (("class", "client"), ("operation", "GetItem"), ("protocol", "dax")): 2,
    }
    assert samples(metrics, "daxproxy_table_requests_total") == {
        (("cache", "miss"), ("operation", "GetItem"), ("protocol", "http"), ("table", "t")): 1,
        (("cache", "hit"), ("operation", "GetItem"), ("protocol", "dax"), ("table", "t")): 1,
        (("cache", "bypass"), ("operation", "GetItem"), ("protocol", "dax"), ("table", "")): 1,
        (
            ("cache", "bypass"),
            ("operation", "GetItem"),
            ("protocol", "dax"),
            ("table", "missing"),
        ): 1,
    }
    if observed:
        assert [o.protocol for o in recorder.outcomes] == ["http", "dax", "dax", "dax"]


def test_throttles_are_counted_under_their_protocol() -> None:
    metrics = Metrics()
    throttled = Outcome("GetItem", None, "bypass", 400, "ThrottlingException", 0.001, "dax")
    metrics.observed(throttled)
    assert samples(metrics, "daxproxy_throttled_requests_total") == {
        (("operation", "GetItem"), ("protocol", "dax")): 1
    }


async def test_observers_hear_each_outcome() -> None:
    recorder = Recorder()
    fake = FakeDynamoDB()
    proxy = Proxy(fake.upstream, max_body_bytes=1024, observers=[recorder])
    await proxy.handle(get_item("1"))
    await proxy.handle(request("GetItem", b"{"))
    await proxy.handle(batch_get("1"))
    await proxy.handle(request("Unheard", {}, target="DynamoDBStreams_20120810.Unheard"))
    outcomes = [(o.operation, o.table, o.cache, o.status, o.error_type) for o in recorder.outcomes]
    assert outcomes == [
        ("GetItem", "t", "bypass", 200, None),  # no caches: everything is forwarded
        ("GetItem", None, "bypass", 400, "SerializationException"),
        ("BatchGetItem", "t", "bypass", 200, None),
        ("Unknown", None, "bypass", 200, None),
    ]
    assert all(0 < o.seconds < 1 for o in recorder.outcomes)


async def test_an_observer_that_fails_does_not_fail_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def observed(self, outcome: Outcome) -> None:
            raise RuntimeError("observer bug")

    recorder = Recorder()
    proxy = Proxy(FakeUpstream(), max_body_bytes=1024, observers=[Broken(), recorder])
    assert (await proxy.handle(get_item("1"))).status == 200
    assert len(recorder.outcomes) == 1
    assert "observer bug" in caplog.text


async def test_a_fault_in_the_proxy_is_observed_as_a_server_error() -> None:
    def explode(sent: Sent) -> UpstreamResponse:
        raise RuntimeError("bug")

    recorder = Recorder()
    proxy = Proxy(FakeUpstream(answer=explode), max_body_bytes=1024, observers=[recorder])
    with pytest.raises(RuntimeError):
        await proxy.handle(get_item("1"))
    [outcome] = recorder.outcomes
    assert (outcome.operation, outcome.status, outcome.error_type) == (
        "GetItem",
        500,
        "InternalServerError",
    )
    assert proxy.in_flight == 0


async def test_a_gzip_error_body_still_names_its_error() -> None:
    body = gzip.compress(b'{"__type":"x#ThrottlingException","message":"slow down"}')
    answer = UpstreamResponse(400, [("Content-Encoding", "gzip")], body)
    recorder = Recorder()
    proxy = Proxy(
        FakeUpstream(answer=lambda sent: answer), max_body_bytes=1024, observers=[recorder]
    )
    await proxy.handle(request("ListTables", {}))
    assert recorder.outcomes[0].error_type == "ThrottlingException"


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    metrics = Metrics()
    for seconds in (0.00005, 0.00007, 0.2, 30.0):
        metrics.observed(Outcome("GetItem", None, "hit", 200, None, seconds))
    labels = {"protocol": "http", "operation": "GetItem", "cache": "hit"}
    name = "daxproxy_request_duration_seconds_bucket"
    assert metrics.registry.get_sample_value(name, {**labels, "le": "5e-05"}) == 1
    assert metrics.registry.get_sample_value(name, {**labels, "le": "0.0001"}) == 2
    assert metrics.registry.get_sample_value(name, {**labels, "le": "0.25"}) == 3
    assert metrics.registry.get_sample_value(name, {**labels, "le": "10.0"}) == 3
    assert metrics.registry.get_sample_value(name, {**labels, "le": "+Inf"}) == 4
    assert len(samples(metrics, name)) == len(BUCKETS) + 1
    assert sample(metrics, "daxproxy_request_duration_seconds_sum", **labels) == pytest.approx(
        30.20012
    )


def test_two_metrics_do_not_share_a_registry() -> None:
    one, two = Metrics(), Metrics()
    one.observed(Outcome("GetItem", None, "hit", 200, None, 0.001))
    assert sample(one, "daxproxy_requests_total", operation="GetItem", protocol="http") == 1
    assert sample(two, "daxproxy_requests_total", operation="GetItem", protocol="http") is None


# The upstream client's reports -------------------------------------------------------


@contextlib.asynccontextmanager
async def http_upstream(url: str, metrics: Metrics) -> AsyncIterator[HttpUpstream]:
    upstream = HttpUpstream(
        Endpoints(url, url),
        Signer(StaticCredentials(LOCAL_CREDENTIALS), "us-east-1"),
        connect_timeout=0.5,
        request_timeout=0.3,
        max_connections=4,
        observer=metrics,
    )
    try:
        yield upstream
    finally:
        await upstream.close()


async def test_the_upstream_reports_latency_and_why_it_failed() -> None:
    release: list[bool] = []

    async def handler(request: web.Request) -> web.Response:
        if request.headers["X-Amz-Target"].endswith("Scan"):
            while not release:  # stall past the request timeout
                await asyncio.sleep(0.05)
        return web.Response(body=b"{}")

    app = web.Application()
    app.router.add_post("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    metrics = Metrics()
    get, scan = Target("DynamoDB_20120810", "GetItem"), Target("DynamoDB_20120810", "Scan")
    try:
        async with http_upstream(str(server.make_url("/")), metrics) as upstream:
            await upstream.send(get, b"{}", [], retry_safe=True)
            await upstream.send(Target("DynamoDB_20120810", "Brand"), b"{}", [], retry_safe=False)
            with pytest.raises(DynamoDBError):
                await upstream.send(scan, b"{}", [], retry_safe=True)
            release.append(True)
            assert await upstream.ping()  # readiness probes are not counted
        async with http_upstream(f"http://127.0.0.1:{free_port()}/", metrics) as refused:
            with pytest.raises(ServiceUnavailable):
                await refused.send(get, b"{}", [], retry_safe=True)
    finally:
        await server.close()
    assert samples(metrics, "daxproxy_upstream_request_duration_seconds_count") == {
        (("operation", "GetItem"),): 1,
        (("operation", "Unknown"),): 1,
    }
    assert samples(metrics, "daxproxy_upstream_failures_total") == {
        (("operation", "GetItem"), ("reason", "connection")): 1,
        (("operation", "Scan"), ("reason", "timeout")): 1,
    }


# The edge --------------------------------------------------------------------------------


class EdgeClient:
    """An aiohttp client of the edge serving ``proxy`` on a loopback port."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{port}"

    async def post(self, path: str, **options: Any) -> aiohttp.ClientResponse:
        async with self.session.post(self.base + path, **options) as response:
            await response.read()  # kept: text() reads it again
        return response

    async def get(self, path: str) -> aiohttp.ClientResponse:
        async with self.session.get(self.base + path) as response:
            await response.read()
        return response


@contextlib.asynccontextmanager
async def app_client(proxy: Proxy) -> AsyncIterator[EdgeClient]:
    async with listening(proxy, Settings()) as (_, port), aiohttp.ClientSession() as session:
        yield EdgeClient(session, port)


def parse(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            yield s.name, s.labels, s.value


async def test_metrics_are_served_and_not_counted_as_requests() -> None:
    proxy = build_proxy(settings(), FakeDynamoDB().upstream)
    async with app_client(proxy) as client:
        headers = {"X-Amz-Target": "DynamoDB_20120810.GetItem"}
        body = orjson.dumps({"TableName": "t", "Key": {"pk": {"S": "1"}}})
        assert (await client.post("/", data=body, headers=headers)).status == 200
        for _ in range(2):
            response = await client.get("/metrics")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()
    parsed = list(parse(text))
    requests = [(labels, v) for name, labels, v in parsed if name == "daxproxy_requests_total"]
    assert requests == [({"protocol": "http", "operation": "GetItem"}, 1.0)]
    [connections] = [v for name, _, v in parsed if name == "daxproxy_client_connections"]
    assert connections >= 1
    assert ("daxproxy_requests_in_flight", {}, 0.0) in parsed


async def test_no_metrics_no_route() -> None:
    async with app_client(Proxy(FakeUpstream(), max_body_bytes=1024)) as client:
        assert (await client.get("/metrics")).status == 404
