"""The one request every benchmark target gets, and the data it reads.

Contract: :data:`REQUEST_BODY` and :data:`REQUEST_HEADERS` are a real GetItem POST for
:data:`KEY` in :data:`TABLE`; :func:`seed` creates that table on a DynamoDB-compatible server
and puts :data:`ITEM` (about 200 bytes of JSON) into it; :data:`RESPONSE_BODY` is the
answer DynamoDB gives; :func:`check_answer` sends the request once and raises
:class:`BadAnswer` unless a target answers it exactly as DynamoDB would.
Seeding passes its own dummy credentials and region, and uses no AWS profile.
"""

from __future__ import annotations

import http.client
import json
import zlib
from typing import Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError

REGION = "us-east-1"
TABLE = "daxproxy-bench"
KEY = {"pk": {"S": "bench#item#0001"}}
ITEM: dict[str, Any] = {
    **KEY,
    "name": {"S": "pass-through benchmark item"},
    "count": {"N": "42"},
    "active": {"BOOL": True},
    "tags": {"L": [{"S": "bench"}, {"S": "getitem"}]},
    "payload": {"S": "0123456789abcdef" * 2},
}
REQUEST_BODY = json.dumps({"TableName": TABLE, "Key": KEY}, separators=(",", ":"))
# The proxy does not check signatures and moto accepts any, but moto picks the service
# from the credential scope, so the dummy signature names dynamodb.
REQUEST_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "application/x-amz-json-1.0"),
    ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
    ("X-Amz-Date", "20261128T000000Z"),
    (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=bench/20261128/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
    ),
)
# moto's encoding (json.dumps defaults), so the constant server sends the same bytes.
RESPONSE_BODY = json.dumps({"Item": ITEM}).encode()


class BadAnswer(RuntimeError):
    """A target answered the benchmark request wrongly: its numbers would mean nothing."""


def seed(endpoint_url: str) -> None:
    """Create :data:`TABLE` and put :data:`ITEM` into it; BadAnswer when the server refuses."""
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
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(
        TableName=TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    client.put_item(TableName=TABLE, Item=ITEM)


def check_answer(url: str, timeout: float = 10.0) -> bytes:
    """POST the request once to ``url``; the body, if it is the item with a correct CRC."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("POST", "/", body=REQUEST_BODY, headers=dict(REQUEST_HEADERS))
        answer = connection.getresponse()
        body = answer.read()
        crc = answer.getheader("x-amz-crc32")
    finally:
        connection.close()
    if answer.status != 200:
        raise BadAnswer(f"{url} answered {answer.status}: {body[:300]!r}")
    if json.loads(body) != {"Item": ITEM}:
        raise BadAnswer(f"{url} answered another body: {body[:300]!r}")
    if crc != str(zlib.crc32(body) & 0xFFFFFFFF):
        raise BadAnswer(f"{url} answered x-amz-crc32 {crc!r}, which does not match its body")
    return body
