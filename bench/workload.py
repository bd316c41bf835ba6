"""The requests the benchmark targets get, and the data they read.

Contract: :data:`GET_ITEM` is a real GetItem POST for :data:`KEY` in :data:`TABLE`, and
:data:`BATCH_GET` a BatchGetItem of the :data:`BATCH_SIZE` keys of :data:`BATCH_ITEMS` in
that table, and :data:`QUERY` a Query (``KeyConditionExpression`` on one partition key) of
:data:`QUERY_TABLE` whose one page is the :data:`QUERY_SIZE` items of :data:`QUERY_ITEMS`
(:data:`REQUESTS` names all three, for the load generators); :func:`seed` creates both
tables on a DynamoDB-compatible server and puts :data:`ITEM` (231 bytes of JSON), the batch
items (one more byte each) and the query items (233 bytes each as moto encodes them, 210
compact) into them; :data:`RESPONSE_BODY` is the GetItem answer
DynamoDB gives; :func:`check_answer` sends a request once and raises :class:`BadAnswer`
unless a target answers it exactly as DynamoDB would (and, when asked, with the expected
``x-daxproxy-cache`` label). Seeding passes its own dummy credentials and region, and uses
no AWS profile.
"""

from __future__ import annotations

import http.client
import json
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError

from bench.dataset import create_table

REGION = "us-east-1"
TABLE = "daxproxy-bench"
KEY = {"pk": {"S": "bench#item#0001"}}
_ATTRIBUTES: dict[str, Any] = {
    "name": {"S": "pass-through benchmark item"},
    "count": {"N": "42"},
    "active": {"BOOL": True},
    "tags": {"L": [{"S": "bench"}, {"S": "getitem"}]},
    "payload": {"S": "0123456789abcdef" * 2},
}
ITEM: dict[str, Any] = {**KEY, **_ATTRIBUTES}
BATCH_SIZE = 100  # BatchGetItem's limit
BATCH_ITEMS: list[dict[str, Any]] = [
    {"pk": {"S": f"bench#batch#{n:04d}"}, **_ATTRIBUTES} for n in range(BATCH_SIZE)
]
# A table with a sort key, whose one partition holds exactly one page of QUERY_SIZE items.
QUERY_TABLE = "daxproxy-bench-query"
QUERY_PARTITION = {"pk": {"S": "bench#query#0001"}}
QUERY_SIZE = 10
_QUERY_ATTRIBUTES: dict[str, Any] = {
    "name": {"S": "query benchmark item"},
    "count": {"N": "42"},
    "active": {"BOOL": True},
    "tags": {"L": [{"S": "bench"}, {"S": "query"}]},
    "payload": {"S": "0123456789abcdef"},
}
QUERY_ITEMS: list[dict[str, Any]] = [
    {**QUERY_PARTITION, "sk": {"S": f"item#{n:04d}"}, **_QUERY_ATTRIBUTES}
    for n in range(QUERY_SIZE)
]
CACHE_HEADER = "x-daxproxy-cache"
Headers = tuple[tuple[str, str], ...]


def _headers(operation: str) -> Headers:
    # The proxy does not check signatures and moto accepts any, but moto picks the service
    # from the credential scope, so the dummy signature names dynamodb.
    return (
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", f"DynamoDB_20120810.{operation}"),
        ("X-Amz-Date", "20261128T000000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=bench/20261128/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
        ),
    )


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Request:
    """One POST, sent unchanged by the load generator for a whole measurement."""

    name: str
    body: str
    headers: Headers
    items: int  # items in a full answer


GET_ITEM = Request("getitem", _compact({"TableName": TABLE, "Key": KEY}), _headers("GetItem"), 1)
BATCH_GET = Request(
    "batchget100",
    _compact({"RequestItems": {TABLE: {"Keys": [{"pk": i["pk"]} for i in BATCH_ITEMS]}}}),
    _headers("BatchGetItem"),
    BATCH_SIZE,
)
QUERY = Request(
    "query10",
    _compact(
        {
            "TableName": QUERY_TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": QUERY_PARTITION["pk"]},
        }
    ),
    _headers("Query"),
    QUERY_SIZE,
)
REQUESTS = {request.name: request for request in (GET_ITEM, BATCH_GET, QUERY)}
# moto's encoding (json.dumps defaults), so the constant server sends the same bytes.
RESPONSE_BODY = json.dumps({"Item": ITEM}).encode()


class BadAnswer(RuntimeError):
    """A target answered a benchmark request wrongly: its numbers would mean nothing."""


def seed(endpoint_url: str) -> None:
    """Create :data:`TABLE` and :data:`QUERY_TABLE`, and put :data:`ITEM`,
    :data:`BATCH_ITEMS` and :data:`QUERY_ITEMS` into them; BadAnswer when the server refuses."""
    try:
        _seed(endpoint_url)
    except (BotoCoreError, ClientError) as exc:
        raise BadAnswer(f"could not seed {endpoint_url}: {exc}") from None


def _seed(endpoint_url: str) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    for table, keys in ((TABLE, ("pk",)), (QUERY_TABLE, ("pk", "sk"))):
        create_table(client, table, keys)
    client.put_item(TableName=TABLE, Item=ITEM)
    for table, items in ((TABLE, BATCH_ITEMS), (QUERY_TABLE, QUERY_ITEMS)):
        for start in range(0, len(items), 25):  # BatchWriteItem takes 25 at a time
            puts = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            left = client.batch_write_item(RequestItems={table: puts}).get("UnprocessedItems")
            if left:
                raise BadAnswer(f"{endpoint_url} left items of {table} unwritten: {left}")


def _comparable(request: Request, answer: Any) -> Any:
    """What must match in an answer. For a batch: the items, in any order (DynamoDB's is
    unspecified), and the unprocessed keys; for a Query, everything but ConsumedCapacity
    (the items in sort-key order); never ConsumedCapacity, which moto sends unasked."""
    if request is QUERY and isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k != "ConsumedCapacity"}
    if request is BATCH_GET and isinstance(answer, dict):
        responses = answer.get("Responses")
        if isinstance(responses, dict) and all(isinstance(v, list) for v in responses.values()):
            ordered = {t: sorted(items, key=_compact) for t, items in responses.items()}
            return {"Responses": ordered, "UnprocessedKeys": answer.get("UnprocessedKeys", {})}
    return answer


def expected_answer(request: Request) -> Any:
    """What DynamoDB answers to the request, after :func:`_comparable`."""
    if request is BATCH_GET:
        answer = {"Responses": {TABLE: BATCH_ITEMS}, "UnprocessedKeys": {}}
        return _comparable(request, answer)
    if request is QUERY:
        return {"Items": QUERY_ITEMS, "Count": QUERY_SIZE, "ScannedCount": QUERY_SIZE}
    return {"Item": ITEM}


def check_answer(
    url: str,
    request: Request = GET_ITEM,
    *,
    cache: str | None = None,
    expected: bytes | None = None,
    timeout: float = 10.0,
) -> bytes:
    """POST the request once to ``url``; the body, if it is right: status 200, a CRC that
    matches, the items DynamoDB would send (the same as ``expected``, another target's
    answer, when given; in any order for a batch) and, when ``cache`` is given, that
    ``x-daxproxy-cache`` label."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("POST", "/", body=request.body, headers=dict(request.headers))
        answer = connection.getresponse()
        body = answer.read()
        crc = answer.getheader("x-amz-crc32")
        label = answer.getheader(CACHE_HEADER)
    finally:
        connection.close()
    what = f"{url} answered {request.name}"
    if answer.status != 200:
        raise BadAnswer(f"{what} with {answer.status}: {body[:300]!r}")
    got = _comparable(request, json.loads(body))
    if got != expected_answer(request):
        raise BadAnswer(f"{what} with another body: {body[:300]!r}")
    if expected is not None and got != _comparable(request, json.loads(expected)):
        raise BadAnswer(f"{what} otherwise than the reference {expected[:300]!r}: {body[:300]!r}")
    if crc != str(zlib.crc32(body) & 0xFFFFFFFF):
        raise BadAnswer(f"{what} with x-amz-crc32 {crc!r}, which does not match its body")
    if cache is not None and label != cache:
        raise BadAnswer(f"{what} with {CACHE_HEADER}: {label!r}, not {cache!r}")
    return body
