"""Byte for byte: raw requests through the proxy get moto's exact status, body and headers.

Below the SDKs: the same signed request goes to the proxy with every cache off and to an
identical moto server, and the status, the body bytes and the content type must be equal,
with a CRC that matches the body and a request id: turning the caches off leaves the proxy
exactly transparent. With the item cache on, answers the cache builds must parse to the
same JSON. Covers compressed request bodies and the largest request DynamoDB accepts.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import http.client
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.conftest import Endpoints
from tests.integration.harness import EDGE_LOOPS, PK_SK_TABLE, REGION, running_proxy

CREDENTIALS = Credentials("testing", "testing")


@pytest.fixture(scope="module", params=EDGE_LOOPS)
def endpoints(endpoints: Endpoints, request: pytest.FixtureRequest) -> Iterator[Endpoints]:
    """The suite's endpoints, with the proxy and the pass-through proxy on each event loop."""
    loop = ("--event-loop", request.param)
    with (
        running_proxy("--upstream", endpoints.upstream, *loop) as proxy,
        running_proxy(
            "--upstream", endpoints.upstream, "--item-cache-max-bytes", "0", *loop
        ) as passthrough,
    ):
        yield dataclasses.replace(endpoints, proxy=proxy.url, passthrough=passthrough.url)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]  # lower-case names

    def check_integrity(self) -> None:
        assert self.headers["x-amz-crc32"] == str(zlib.crc32(self.body))
        assert self.headers["x-amzn-requestid"]


def post(
    url: str, operation: str, body: bytes, *, prefix: str = "DynamoDB_20120810", **headers: str
) -> Answer:
    """A signed POST, as an SDK sends it (moto reads the region from the signature)."""
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"{prefix}.{operation}",
            **headers,
        },
    )
    SigV4Auth(CREDENTIALS, "dynamodb", REGION).add_auth(request)
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return Answer(
            response.status,
            response.read(),
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()


def call_both(
    endpoints: Endpoints, operation: str, payload: object, *, prefix: str = "DynamoDB_20120810"
) -> Answer:
    body = orjson.dumps(payload)
    through_proxy = post(endpoints.passthrough, operation, body, prefix=prefix)
    direct = post(endpoints.direct, operation, body, prefix=prefix)
    assert (through_proxy.status, through_proxy.body) == (direct.status, direct.body)
    through_proxy.check_integrity()
    assert through_proxy.headers["content-type"] == direct.headers["content-type"]
    if "x-amz-crc32" in direct.headers:  # else the proxy adds one (moto's Streams API has none)
        assert through_proxy.headers["x-amz-crc32"] == direct.headers["x-amz-crc32"]
    return through_proxy


@pytest.fixture
def table(endpoints: Endpoints) -> str:
    """A table with a few items, created alike behind the proxy and on the direct server."""
    name = f"wire-{uuid.uuid4().hex[:8]}"
    for url in (endpoints.upstream, endpoints.direct):
        client = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)
        client.create_table(TableName=name, **PK_SK_TABLE)
        for i in range(5):
            client.put_item(
                TableName=name,
                Item={"pk": {"S": "p"}, "sk": {"N": str(i)}, "text": {"S": f"élan {i}"}},
            )
    return name


def test_reads_and_errors_are_moto_byte_for_byte(endpoints: Endpoints, table: str) -> None:
    key = {"pk": {"S": "p"}, "sk": {"N": "1"}}
    got = call_both(endpoints, "GetItem", {"TableName": table, "Key": key})
    assert orjson.loads(got.body)["Item"]["text"] == {"S": "élan 1"}
    call_both(endpoints, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
    call_both(
        endpoints,
        "Query",
        {
            "TableName": table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "p"}},
            "Limit": 2,
        },
    )
    call_both(endpoints, "Scan", {"TableName": table, "ReturnConsumedCapacity": "TOTAL"})
    call_both(endpoints, "BatchGetItem", {"RequestItems": {table: {"Keys": [key]}}})
    missing = call_both(endpoints, "GetItem", {"TableName": table + "-nope", "Key": key})
    assert missing.status == 400
    assert orjson.loads(missing.body)["__type"].endswith("#ResourceNotFoundException")
    invalid = call_both(endpoints, "GetItem", {"TableName": table, "Key": {"pk": {"S": "p"}}})
    assert orjson.loads(invalid.body)["__type"].endswith("#ValidationException")


def test_a_gzip_request_body_is_forwarded_as_sent(endpoints: Endpoints, table: str) -> None:
    item = {"pk": {"S": "gz"}, "sk": {"N": "1"}, "payload": {"S": "z" * 5000}}
    put = gzip.compress(orjson.dumps({"TableName": table, "Item": item}))
    get = gzip.compress(
        orjson.dumps({"TableName": table, "Key": {"pk": {"S": "gz"}, "sk": {"N": "1"}}})
    )
    answers = []
    for url in (endpoints.passthrough, endpoints.direct):
        answers.append(
            (
                post(url, "PutItem", put, **{"Content-Encoding": "gzip"}),
                post(url, "GetItem", get, **{"Content-Encoding": "gzip"}),
            )
        )
    (put_proxy, get_proxy), (put_direct, get_direct) = answers
    assert (
        (put_proxy.status, put_proxy.body) == (put_direct.status, put_direct.body) == (200, b"{}")
    )
    assert (get_proxy.status, get_proxy.body) == (get_direct.status, get_direct.body)
    assert orjson.loads(get_proxy.body)["Item"] == item
    get_proxy.check_integrity()


def test_the_largest_batch_write_dynamodb_accepts_passes(endpoints: Endpoints, table: str) -> None:
    # 25 items of almost 400 KB of binary: base64 in JSON makes the body about 13 MB,
    # the most BatchWriteItem can carry within DynamoDB's item and request limits.
    blob = base64.b64encode(b"\xab" * 399_000).decode()
    requests = [
        {"PutRequest": {"Item": {"pk": {"S": "big"}, "sk": {"N": str(i)}, "b": {"B": blob}}}}
        for i in range(25)
    ]
    body = orjson.dumps({"RequestItems": {table: requests}})
    assert len(body) > 13_000_000
    answer = post(endpoints.proxy, "BatchWriteItem", body)
    assert (answer.status, orjson.loads(answer.body)["UnprocessedItems"]) == (200, {})
    answer.check_integrity()
    got = post(
        endpoints.proxy,
        "GetItem",
        orjson.dumps({"TableName": table, "Key": {"pk": {"S": "big"}, "sk": {"N": "24"}}}),
    )
    assert orjson.loads(got.body)["Item"]["b"]["B"] == blob


def test_streams_targets_are_forwarded(endpoints: Endpoints) -> None:
    answer = call_both(endpoints, "ListStreams", {"Limit": 1}, prefix="DynamoDBStreams_20120810")
    assert answer.status == 200 and "Streams" in orjson.loads(answer.body)


def test_answers_the_item_cache_builds_are_moto_json(endpoints: Endpoints, table: str) -> None:
    key = {"pk": {"S": "p"}, "sk": {"N": "2"}}
    requests = [
        ("GetItem", {"TableName": table, "Key": key}),
        ("GetItem", {"TableName": table, "Key": {"pk": {"S": "none"}, "sk": {"N": "2"}}}),
        ("GetItem", {"TableName": table, "Key": key, "ReturnConsumedCapacity": "TOTAL"}),
        ("BatchGetItem", {"RequestItems": {table: {"Keys": [key]}}}),
    ]
    for operation, payload in requests * 2:  # a miss, then a hit
        body = orjson.dumps(payload)
        cached = post(endpoints.proxy, operation, body)
        direct = post(endpoints.direct, operation, body)
        cached.check_integrity()
        assert cached.headers["x-daxproxy-cache"] in ("hit", "miss")
        expected = orjson.loads(direct.body)
        if "ReturnConsumedCapacity" in payload:  # a hit consumes nothing, as DAX reports
            cached_capacity = orjson.loads(cached.body)["ConsumedCapacity"]
            assert cached_capacity["TableName"] == expected["ConsumedCapacity"]["TableName"]
        # (moto reports BatchGetItem's capacity even when not asked; DynamoDB does not.)
        strip = lambda answer: {k: v for k, v in answer.items() if k != "ConsumedCapacity"}  # noqa: E731
        assert (cached.status, strip(orjson.loads(cached.body))) == (direct.status, strip(expected))
