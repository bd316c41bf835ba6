"""The request handler with a fake upstream: what is checked, what is forwarded, in what order."""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest

from daxproxy.core.errors import ServiceUnavailable
from daxproxy.core.wire import Headers, Target
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.upstream import UpstreamResponse
from tests.fakes import FakeUpstream

GET_ITEM = "DynamoDB_20120810.GetItem"
BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'


def request(target: str | None, body: bytes, *extra: tuple[str, str]) -> ClientRequest:
    headers: Headers = [
        ("Host", "localhost:8111"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=client/..."),
        ("Content-Type", "application/x-amz-json-1.0"),
        *([("X-Amz-Target", target)] if target is not None else []),
        *extra,
    ]
    encoding = next((v for k, v in extra if k == "Content-Encoding"), None)
    return ClientRequest(tuple(headers), body, target, encoding)


def error_type(body: bytes) -> str:
    return str(orjson.loads(body)["__type"]).split("#")[1]


async def test_forwards_the_body_as_sent_and_relays_the_answer() -> None:
    upstream = FakeUpstream()
    proxy = Proxy(upstream, max_body_bytes=1024)
    answer = await proxy.handle(request(GET_ITEM, BODY))
    assert (answer.status, answer.body) == (200, b"{}")
    assert ("x-amzn-RequestId", "UPSTREAM") in answer.headers
    [sent] = upstream.sent
    assert (sent.target.operation, sent.body, sent.retry_safe) == ("GetItem", BODY, True)
    names = {k.lower() for k, _ in sent.headers}
    assert "authorization" not in names and "host" not in names


async def test_a_compressed_body_is_forwarded_compressed() -> None:
    upstream = FakeUpstream()
    compressed = gzip.compress(BODY)
    answer = await Proxy(upstream, max_body_bytes=1024).handle(
        request(GET_ITEM, compressed, ("Content-Encoding", "gzip"))
    )
    assert answer.status == 200
    assert upstream.sent[0].body == compressed
    assert ("Content-Encoding", "gzip") in upstream.sent[0].headers


@pytest.mark.parametrize(
    ("operation", "retry_safe"),
    [
        ("GetItem", True),
        ("Query", True),
        ("DescribeTable", True),
        ("PutItem", False),
        ("UpdateItem", False),
        ("TransactWriteItems", False),
        ("ExecuteStatement", False),
        ("CreateTable", False),
        ("SomeFutureOperation", False),
    ],
)
async def test_only_read_only_operations_may_be_resent(operation: str, retry_safe: bool) -> None:
    upstream = FakeUpstream()
    await Proxy(upstream, max_body_bytes=1024).handle(
        request(f"DynamoDB_20120810.{operation}", b"{}")
    )
    assert upstream.sent[0].retry_safe is retry_safe


@pytest.mark.parametrize(
    ("target", "body", "status", "code"),
    [
        # DynamoDB reads the body before it routes: bad JSON wins over a bad target.
        ("Nope", b"not json", 400, "SerializationException"),
        (GET_ITEM, b"not json", 400, "SerializationException"),
        (GET_ITEM, b"[1, 2]", 400, "SerializationException"),
        (None, BODY, 400, "UnknownOperationException"),
        ("DynamoDB_20120810", BODY, 400, "UnknownOperationException"),
        ("Kinesis_20131202.GetRecords", BODY, 400, "UnknownOperationException"),
        # An empty body is only looked at once the target routes.
        ("Nope", b"", 400, "UnknownOperationException"),
        (GET_ITEM, b"", 400, "SerializationException"),
    ],
)
async def test_bad_requests_never_reach_the_upstream(
    target: str | None, body: bytes, status: int, code: str
) -> None:
    upstream = FakeUpstream()
    answer = await Proxy(upstream, max_body_bytes=1024).handle(request(target, body))
    assert answer.status == status
    assert error_type(answer.body) == code
    assert upstream.sent == []


async def test_a_compressed_body_over_the_limit_is_refused() -> None:
    upstream = FakeUpstream()
    bomb = gzip.compress(b'{"a":"' + b"x" * 5000 + b'"}')
    answer = await Proxy(upstream, max_body_bytes=1024).handle(
        request(GET_ITEM, bomb, ("Content-Encoding", "gzip"))
    )
    assert (answer.status, error_type(answer.body)) == (413, "RequestEntityTooLargeException")
    assert upstream.sent == []


async def test_upstream_errors_are_relayed_verbatim() -> None:
    body = (
        b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",'
        b'"message":"The conditional request failed","Item":{"pk":{"S":"1"}}}'
    )
    upstream = FakeUpstream(answer=lambda sent: UpstreamResponse(400, [("x-amz-crc32", "7")], body))
    answer = await Proxy(upstream, max_body_bytes=1024).handle(request(GET_ITEM, BODY))
    assert (answer.status, answer.body) == (400, body)
    assert ("x-amz-crc32", "7") in answer.headers


async def test_an_upstream_that_cannot_answer_becomes_a_dynamodb_error() -> None:
    upstream = FakeUpstream(answer=lambda sent: ServiceUnavailable("down"))
    answer = await Proxy(upstream, max_body_bytes=1024).handle(request(GET_ITEM, BODY))
    assert answer.status == 503
    assert orjson.loads(answer.body) == {
        "__type": "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
        "message": "down",
    }


class GatedUpstream(FakeUpstream):
    """Holds every request until ``gate`` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        await self.gate.wait()
        return await super().send(target, body, headers, retry_safe=retry_safe)


async def test_past_the_cap_on_requests_in_flight_a_request_is_throttled_at_once() -> None:
    upstream = GatedUpstream()
    proxy = Proxy(upstream, max_body_bytes=1024, max_in_flight=2)
    held = [asyncio.create_task(proxy.handle(request(GET_ITEM, BODY))) for _ in range(2)]
    await asyncio.sleep(0)
    assert proxy.in_flight == 2
    shed = await proxy.handle(request(GET_ITEM, BODY))  # answered while the two wait
    assert shed.status == 400
    assert orjson.loads(shed.body) == {
        "__type": "com.amazon.coral.availability#ThrottlingException",
        "message": "Rate of requests exceeds the allowed throughput.",
    }
    assert len(upstream.sent) == 0 and proxy.in_flight == 2
    upstream.gate.set()
    assert [(await task).status for task in held] == [200, 200]
    assert (await proxy.handle(request(GET_ITEM, BODY))).status == 200  # room again
    assert proxy.in_flight == 0 and len(upstream.sent) == 3


async def test_no_cap_on_requests_in_flight_when_it_is_0() -> None:
    upstream = GatedUpstream()
    proxy = Proxy(upstream, max_body_bytes=1024, max_in_flight=0)
    held = [asyncio.create_task(proxy.handle(request(GET_ITEM, BODY))) for _ in range(50)]
    await asyncio.sleep(0)
    assert proxy.in_flight == 50
    upstream.gate.set()
    assert {(await task).status for task in held} == {200}
