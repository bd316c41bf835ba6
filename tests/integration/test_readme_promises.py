"""What the README promises, each on the real proxy in front of a real moto server.

- Every GetItem, BatchGetItem, Query and Scan answer carries ``x-daxproxy-cache``, also
  with the item cache, the query cache or both off (then ``bypass``).
- DeleteTable and UpdateTable drop the table's items and key schema: a table deleted and
  created again with another key schema is read and written by its new key, and answers
  equal moto's straight.
- A ``deflate`` (or ``gzip``) body is forwarded as sent, still compressed, and answered as
  moto answers it straight.
- With ``auth_file``, ``/healthz``, ``/readyz``, ``/metrics`` and ``/admin/*`` are not
  authenticated, while a DynamoDB request is.
- Credentials: with no AWS credentials anywhere, a local upstream gets placeholder ones;
  ``--upstream aws`` stops start-up with exit code 2.

Between the proxies and moto sits a counting forwarder, which also keeps each operation's
last request as it arrived, so a test sees what the upstream got.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from tests.integration.harness import (
    PK_SK_TABLE,
    CountedStack,
    dynamodb_client,
    get,
    normalize,
    running_proxy,
    without_unasked_capacity,
)

AUTH_FILE = """
[[keys]]
access_key_id = "AKIAREADMEPROMISES01"
secret_access_key = "readme-promises-secret-1"
tables = ["*"]
operations = ["*"]
"""
CACHES_OFF = {
    "proxy": (),
    "item_off": ("--item-cache-max-bytes", "0"),
    "query_off": ("--query-ttl-millis", "0"),
    "both_off": ("--item-cache-max-bytes", "0", "--query-ttl-millis", "0"),
}
HASH_ONLY: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


class Stack(CountedStack):
    def setup(self) -> None:
        self.proxies = {name: self.start_proxy(*options) for name, options in CACHES_OFF.items()}
        self.directory = tempfile.mkdtemp(prefix="daxproxy-readme-")
        auth_file = Path(self.directory, "auth.toml")
        auth_file.write_text(AUTH_FILE)
        self.locked = self.start_proxy("--auth-file", str(auth_file), "--admin")

    def stop(self) -> None:
        super().stop()
        directory = getattr(self, "directory", None)
        if directory is not None:
            for entry in Path(directory).iterdir():
                entry.unlink()
            os.rmdir(directory)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        yield stack
    finally:
        stack.stop()


def outcome(answer: dict[str, Any]) -> str | None:
    return answer["ResponseMetadata"]["HTTPHeaders"].get("x-daxproxy-cache")


def new_table(url: str, schema: dict[str, Any] = PK_SK_TABLE) -> str:
    name = f"readme-{uuid.uuid4().hex[:8]}"
    dynamodb_client(url).create_table(TableName=name, **schema)
    return name


# x-daxproxy-cache ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "item_cache", "query_cache"),
    [
        ("proxy", ("miss", "hit"), ("miss", "hit")),
        ("item_off", ("bypass", "bypass"), ("miss", "hit")),
        ("query_off", ("miss", "hit"), ("bypass", "bypass")),
        ("both_off", ("bypass", "bypass"), ("bypass", "bypass")),
    ],
)
def test_every_read_answer_says_what_the_cache_did(
    stack: Stack, proxy: str, item_cache: tuple[str, str], query_cache: tuple[str, str]
) -> None:
    table = new_table(stack.moto.url)
    direct = dynamodb_client(stack.moto.url)
    for sk in (1, 2):
        direct.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": str(sk)}})
    c = dynamodb_client(stack.proxies[proxy].url)
    reads: dict[str, tuple[Any, tuple[str, str]]] = {
        "GetItem": (
            lambda: c.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}),
            item_cache,
        ),
        "BatchGetItem": (
            lambda: c.batch_get_item(
                RequestItems={table: {"Keys": [{"pk": {"S": "a"}, "sk": {"N": "2"}}]}}
            ),
            item_cache,
        ),
        "Query": (
            lambda: c.query(
                TableName=table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "a"}},
            ),
            query_cache,
        ),
        "Scan": (lambda: c.scan(TableName=table), query_cache),
    }
    for operation, (read, expected) in reads.items():
        first, second = read(), read()
        assert (outcome(first), outcome(second)) == expected, operation
        assert normalize(without_unasked_capacity(first)) == normalize(
            without_unasked_capacity(second)
        ), operation


# DeleteTable and UpdateTable -------------------------------------------------------------


def key(pk: str, sk: int | None = None) -> dict[str, Any]:
    return {"pk": {"S": pk}} if sk is None else {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def same_error(call: Any, straight: Any) -> dict[str, Any]:
    """The error a call through the proxy gets, which must be the one moto gives straight."""
    errors = []
    for attempt in (call, straight):
        with pytest.raises(ClientError) as caught:
            attempt()
        errors.append((caught.value.response["Error"], caught.value.response["ResponseMetadata"]))
    (got, got_meta), (want, want_meta) = errors
    assert got == want and got_meta["HTTPStatusCode"] == want_meta["HTTPStatusCode"]
    return dict(got)


def test_a_table_deleted_and_created_with_another_key_schema_is_read_by_its_new_key(
    stack: Stack,
) -> None:
    proxy = stack.proxies["proxy"]
    c, direct = dynamodb_client(proxy.url), dynamodb_client(stack.moto.url)
    table = new_table(proxy.url, HASH_ONLY)
    c.put_item(TableName=table, Item={**key("a"), "v": {"S": "old"}})
    assert outcome(c.get_item(TableName=table, Key=key("a"))) == "hit"  # written through
    described = stack.forwarder.count("DescribeTable")

    c.delete_table(TableName=table)
    c.create_table(TableName=table, **PK_SK_TABLE)  # now "pk" and a number "sk"
    for sk in (1, 2):  # one "pk", two items: the old schema would see one key
        c.put_item(TableName=table, Item={**key("a", sk), "v": {"S": f"new-{sk}"}})
    for sk in (1, 2):
        first = c.get_item(TableName=table, Key=key("a", sk))
        second = c.get_item(TableName=table, Key=key("a", sk))
        straight = direct.get_item(TableName=table, Key=key("a", sk))
        assert first["Item"] == second["Item"] == straight["Item"]
        assert straight["Item"]["v"] == {"S": f"new-{sk}"}
        assert outcome(second) == "hit"  # cached under the new key schema
    # The key schema was learned anew, once.
    assert stack.forwarder.count("DescribeTable") == described + 1
    # The old key's shape is now DynamoDB's error, as moto gives it.
    error = same_error(
        lambda: c.get_item(TableName=table, Key=key("a")),
        lambda: direct.get_item(TableName=table, Key=key("a")),
    )
    assert error["Code"] == "ValidationException"


def test_update_table_drops_the_tables_items_and_key_schema(stack: Stack) -> None:
    proxy = stack.proxies["proxy"]
    c, direct = dynamodb_client(proxy.url), dynamodb_client(stack.moto.url)
    table = new_table(proxy.url, HASH_ONLY)
    direct.put_item(TableName=table, Item={**key("a"), "v": {"S": "one"}})
    assert outcome(c.get_item(TableName=table, Key=key("a"))) == "miss"
    direct.put_item(TableName=table, Item={**key("a"), "v": {"S": "two"}})  # behind its back
    stale = c.get_item(TableName=table, Key=key("a"))
    assert (stale["Item"]["v"], outcome(stale)) == ({"S": "one"}, "hit")
    described = stack.forwarder.count("DescribeTable")

    # The key schema cannot change in place; what moto lets UpdateTable change, it does.
    c.update_table(
        TableName=table,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    fresh = c.get_item(TableName=table, Key=key("a"))
    assert outcome(fresh) == "miss"
    assert fresh["Item"] == direct.get_item(TableName=table, Key=key("a"))["Item"]
    assert fresh["Item"]["v"] == {"S": "two"}
    assert stack.forwarder.count("DescribeTable") == described + 1


# A compressed body ----------------------------------------------------------------------

# moto's server routes a request by the scope of its signature; it checks no signature.
FAKE_SIGNATURE = (
    "AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=00"
)
COMPRESS = {"deflate": zlib.compress, "gzip": gzip.compress}


def compressed(
    url: str, operation: str, payload: dict[str, Any], encoding: str
) -> tuple[int, bytes, bytes]:
    """POST ``payload`` compressed; the status, the answer and the bytes sent."""
    body = COMPRESS[encoding](orjson.dumps(payload))
    status, answer = get(
        url + "/",
        data=body,
        headers={
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Content-Type": "application/x-amz-json-1.0",
            "Content-Encoding": encoding,
            "Authorization": FAKE_SIGNATURE,
        },
    )
    return status, answer, body


@pytest.mark.parametrize("encoding", ["deflate", "gzip"])
@pytest.mark.parametrize(("proxy", "operation"), [("both_off", "GetItem"), ("proxy", "PutItem")])
def test_a_compressed_body_is_forwarded_compressed_and_answered_as_straight(
    stack: Stack, proxy: str, operation: str, encoding: str
) -> None:
    # Two tables alike: one through the proxy, one straight, so that a write's answer (the
    # old item) can be compared.
    tables = [new_table(stack.moto.url, HASH_ONLY) for _ in range(2)]
    before = {**key("a"), "v": {"S": "before"}}
    for table in tables:
        dynamodb_client(stack.moto.url).put_item(TableName=table, Item=before)
    payloads = [
        {"TableName": table, "Key": key("a")}
        if operation == "GetItem"
        else {
            "TableName": table,
            "Item": {**key("a"), "v": {"S": "after"}},
            "ReturnValues": "ALL_OLD",
        }
        for table in tables
    ]
    stack.forwarder.reset()
    status, answer, sent = compressed(stack.proxies[proxy].url, operation, payloads[0], encoding)
    straight_status, straight, _ = compressed(stack.moto.url, operation, payloads[1], encoding)
    assert status == straight_status, (answer[:300], straight[:300])
    if encoding == "gzip":
        assert status == 200
        assert orjson.loads(answer) == orjson.loads(straight)
        assert orjson.loads(answer)["Item" if operation == "GetItem" else "Attributes"] == before
    else:
        # moto's server decodes gzip only: a deflate body gets its HTML 500 page, relayed
        # unchanged. The proxy decoded its own copy (a body it cannot decode is its own 500,
        # as the test below shows), and the upstream's answer is the client's.
        assert answer == straight
    # The upstream got the very bytes the client sent, still compressed, and was told so.
    headers, received = stack.forwarder.last(operation)
    assert received == sent
    assert {k.lower(): v for k, v in headers.items()}["content-encoding"] == encoding


@pytest.mark.parametrize(
    ("encoding", "data"), [("deflate", b"not deflate at all"), ("gzip", b"not gzip at all")]
)
def test_a_body_that_does_not_decode_is_the_proxys_own_500(
    stack: Stack, encoding: str, data: bytes
) -> None:
    # DynamoDB answers a body its Content-Encoding cannot undo with a 500
    # InternalServerError (observed on DynamoDB, issue 13); moto agrees on the status (its
    # HTML 500 page), and the proxy forwards nothing.
    stack.forwarder.reset()
    headers = {
        "X-Amz-Target": "DynamoDB_20120810.GetItem",
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Encoding": encoding,
        "Authorization": FAKE_SIGNATURE,
    }
    status, body = get(stack.proxies["both_off"].url + "/", data=data, headers=headers)
    assert status == 500
    assert orjson.loads(body)["__type"].endswith("#InternalServerError")
    assert stack.forwarder.count("GetItem") == 0
    straight_status, _ = get(stack.moto.url + "/", data=data, headers=headers)
    assert straight_status == status


# auth_file: the endpoints that stay open ------------------------------------------------


def test_with_an_auth_file_health_metrics_and_admin_are_not_authenticated(stack: Stack) -> None:
    url = stack.locked.url
    # A DynamoDB request is checked: without a signature, DynamoDB's own refusal.
    status, body = get(
        url + "/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    assert status == 400
    assert orjson.loads(body)["__type"].endswith("#MissingAuthenticationTokenException")
    # What the README lists as not authenticated answers without any signature.
    for path in ("/healthz", "/readyz", "/metrics", "/admin/caches"):
        status, body = get(url + path)
        assert status == 200, (path, body[:300])
    assert b"daxproxy_requests_total" in get(url + "/metrics")[1]
    status, body = get(url + "/admin/invalidate", data=b'{"all": true}', method="POST")
    assert status == 200, body


# Credentials -----------------------------------------------------------------------------


@pytest.fixture
def no_credentials(tmp_path: Path) -> dict[str, str]:
    """An environment in which the AWS credential chain finds nothing: no AWS_ variable,
    empty shared files, no instance metadata."""
    empty = tmp_path / "empty"
    empty.write_text("")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return environment


def test_a_local_upstream_without_credentials_gets_placeholder_ones(
    stack: Stack, no_credentials: dict[str, str]
) -> None:
    with running_proxy("--upstream", stack.forwarder.url, env=no_credentials) as proxy:
        stack.forwarder.reset()
        tables = dynamodb_client(proxy.url).list_tables()
        assert tables["ResponseMetadata"]["HTTPStatusCode"] == 200
        headers, _ = stack.forwarder.last("ListTables")
        authorization = {k.lower(): v for k, v in headers.items()}["authorization"]
        # Signed, with credentials of the proxy's own: neither the client's nor any found.
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
        assert "Credential=testing/" not in authorization
        assert proxy.stop() == 0, proxy.log()  # SIGTERM: a clean exit
        assert "placeholder credentials" in proxy.log()


def test_upstream_aws_without_credentials_exits_2(no_credentials: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daxproxy", "--port", "0", "--upstream", "aws"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=no_credentials,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "credentials" in done.stderr and "upstream" in done.stderr
    assert "Traceback" not in done.stderr
