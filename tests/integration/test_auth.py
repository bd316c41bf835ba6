"""Authentication through the real proxy process, with an auth file, in front of moto.

boto3 clients with different credentials (and requests botocore signed, then altered) show
each refusal's error type and status; the counting forwarder between the proxy and moto
shows that no refused request costs an upstream call, and that an item cached for a key
allowed to read it is not served to a key that is not. Start-up with a bad auth file exits
2 naming ``auth_file``, and no secret from the file reaches the proxy's log.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.exceptions import ClientError

from tests.integration.harness import (
    NO_RETRIES,
    PK_SK_TABLE,
    REGION,
    TEST_ENV,
    CountedStack,
    dynamodb_client,
    get,
    serving,
)
from tests.signing import sigv4_headers

ORDERS_KEY = "AKIAAUTHORDERS0001"
ORDERS_SECRET = "orders-secret-7Jq2/wXyZ+daxproxy-auth-test-1"
OTHER_KEY = "AKIAAUTHOTHER00002"
OTHER_SECRET = "other-secret-Vb91/kLmN+daxproxy-auth-test-2"
OTHER_SECRET_ENV = "AUTH_TEST_OTHER_SECRET"
READER_KEY = "AKIAAUTHREADER0003"
READER_SECRET = "reader-secret-Qc55/pRsT+daxproxy-auth-test-3"
AUTH_FILE = f"""
[[keys]]
access_key_id = "{ORDERS_KEY}"
secret_access_key = "{ORDERS_SECRET}"
tables = ["auth-orders-*"]
operations = ["read", "write"]

[[keys]]
access_key_id = "{OTHER_KEY}"
secret_access_key_env = "{OTHER_SECRET_ENV}"
tables = ["auth-other-*"]
operations = ["read", "write", "describe"]

[[keys]]
access_key_id = "{READER_KEY}"
secret_access_key = "{READER_SECRET}"
tables = ["auth-orders-*"]
operations = ["read", "describe"]
"""
GET = "DynamoDB_20120810.GetItem"


class Stack(CountedStack):
    def setup(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="daxproxy-auth-")
        self.auth_file = os.path.join(self.directory, "auth.toml")
        Path(self.auth_file).write_text(AUTH_FILE)
        os.environ[OTHER_SECRET_ENV] = OTHER_SECRET  # the proxy process inherits it
        try:
            self.proxy = self.start_proxy(
                "--auth-file", self.auth_file, "--log-requests", "--log-level", "debug"
            )
        finally:
            del os.environ[OTHER_SECRET_ENV]

    def stop(self) -> None:
        super().stop()
        directory = getattr(self, "directory", None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


def client(url: str, key: str, secret: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=NO_RETRIES,
    )


def orders(stack: Stack) -> Any:
    return client(stack.proxy.url, ORDERS_KEY, ORDERS_SECRET)


def other(stack: Stack) -> Any:
    return client(stack.proxy.url, OTHER_KEY, OTHER_SECRET)


@pytest.fixture
def table(stack: Stack) -> str:
    name = f"auth-orders-{uuid.uuid4().hex[:8]}"
    moto = dynamodb_client(stack.moto.url)
    moto.create_table(TableName=name, **PK_SK_TABLE)
    moto.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "x"}})
    stack.forwarder.reset()
    return name


def upstream_calls(stack: Stack) -> int:
    return sum(stack.forwarder.counts.values())


def refusal(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        error["Error"]["Message"],
    )


def signed(
    url: str, body: bytes, key: str = ORDERS_KEY, secret: str = ORDERS_SECRET, target: str = GET
) -> dict[str, str]:
    """The headers botocore's SigV4Auth gives a request (a GetItem) with this body."""
    return dict(sigv4_headers(f"{url}/", target, body, key=key, secret=secret, region=REGION))


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    status, answer = get(f"{url}/", 10, data=body, headers=headers, method="POST")
    return status, json.loads(answer)


def get_body(table: str, pk: str = "a") -> bytes:
    return json.dumps({"TableName": table, "Key": {"pk": {"S": pk}, "sk": {"N": "1"}}}).encode()


def test_a_good_signature_passes(stack: Stack, table: str) -> None:
    proxy = orders(stack)
    proxy.put_item(TableName=table, Item={"pk": {"S": "b"}, "sk": {"N": "1"}})
    found = proxy.get_item(TableName=table, Key={"pk": {"S": "b"}, "sk": {"N": "1"}})
    assert found["Item"]["pk"] == {"S": "b"}
    assert stack.forwarder.count("PutItem") == 1
    # Raw, as botocore signs it, too.
    body = get_body(table)
    status, answer = post(stack.proxy.url, signed(stack.proxy.url, body), body)
    assert status == 200 and answer["Item"]["v"] == {"S": "x"}


def test_each_refusal_has_dynamodb_error_and_never_reaches_the_upstream(
    stack: Stack, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    url = stack.proxy.url
    wrong_secret = client(url, ORDERS_KEY, "not-the-secret")
    assert refusal(lambda: wrong_secret.get_item(TableName=table, Key=key))[:2] == (
        "InvalidSignatureException",
        400,
    )
    stranger = client(url, "AKIAUNKNOWNSTRANGER", "whatever")
    assert refusal(lambda: stranger.get_item(TableName=table, Key=key)) == (
        "UnrecognizedClientException",
        400,
        "The security token included in the request is invalid.",
    )
    code, status, message = refusal(lambda: other(stack).get_item(TableName=table, Key=key))
    assert (code, status) == ("AccessDeniedException", 400)
    assert message.startswith(f"User: {OTHER_KEY} is not authorized to perform: dynamodb:GetItem")
    assert f"table/{table}" in message
    # Signed, then altered on the way: the body no longer matches the signature.
    body = get_body(table)
    tampered_status, tampered = post(url, signed(url, body), get_body(table, pk="z"))
    assert tampered_status == 400
    assert tampered["__type"] == "com.amazon.coral.service#InvalidSignatureException"
    # Signed ten minutes ago: outside the five-minute skew.
    past = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    past -= datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    code, status, message = refusal(lambda: orders(stack).get_item(TableName=table, Key=key))
    monkeypatch.undo()
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("Signature expired: ") and message.endswith(" - 5 min.)")
    unsigned_status, unsigned = post(
        url, {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": GET}, body
    )
    assert unsigned_status == 400
    assert unsigned["__type"] == "com.amazon.coral.service#MissingAuthenticationTokenException"
    assert upstream_calls(stack) == 0
    # The same key, well signed, still gets in.
    assert orders(stack).get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "x"}
    assert upstream_calls(stack) >= 1


def test_a_cached_item_is_not_served_to_a_key_not_allowed_to_read_it(
    stack: Stack, table: str
) -> None:
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    allowed = orders(stack)
    first = allowed.get_item(TableName=table, Key=key)
    second = allowed.get_item(TableName=table, Key=key)
    cache = [a["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"] for a in (first, second)]
    assert cache == ["miss", "hit"]
    before = upstream_calls(stack)
    denied = other(stack)
    assert refusal(lambda: denied.get_item(TableName=table, Key=key))[0] == "AccessDeniedException"
    assert (
        refusal(lambda: denied.batch_get_item(RequestItems={table: {"Keys": [key]}}))[0]
        == "AccessDeniedException"
    )
    assert (
        refusal(lambda: denied.execute_statement(Statement=f'SELECT * FROM "{table}"'))[0]
        == "AccessDeniedException"
    )
    assert refusal(lambda: denied.scan(TableName=table))[0] == "AccessDeniedException"
    assert upstream_calls(stack) == before
    # A key may not use an operation outside its groups either: ORDERS has no "describe".
    assert refusal(lambda: allowed.describe_table(TableName=table))[0] == "AccessDeniedException"
    assert upstream_calls(stack) == before


def test_no_secret_from_the_auth_file_reaches_the_log(stack: Stack, table: str) -> None:
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    orders(stack).get_item(TableName=table, Key=key)
    refusal(lambda: client(stack.proxy.url, ORDERS_KEY, "wrong").get_item(TableName=table, Key=key))
    refusal(lambda: other(stack).get_item(TableName=table, Key=key))
    log = stack.proxy.log()
    assert "auth_file: 3 access keys" in log
    assert "AccessDeniedException" in log  # the request log saw the refusals
    for secret in (ORDERS_SECRET, OTHER_SECRET, READER_SECRET):
        assert secret not in log


def test_a_decoy_select_does_not_let_a_read_only_key_write(stack: Stack, table: str) -> None:
    """An ExecuteTransaction runs its TransactStatements: a SELECT beside them in
    "Statement" (which the upstream ignores) must not make the writes pass as a read."""
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    update = {
        "Statement": f'UPDATE "{table}" SET v = ? WHERE pk = ? AND sk = ?',
        "Parameters": [{"S": "written"}, {"S": "a"}, {"N": "1"}],
    }
    decoy = f"SELECT * FROM \"{table}\" WHERE pk = 'a'"
    url = stack.proxy.url
    reader = client(url, READER_KEY, READER_SECRET)
    assert reader.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "x"}  # may read
    before = upstream_calls(stack)
    bodies = {
        "ExecuteTransaction": {"Statement": decoy, "TransactStatements": [update]},
        "BatchExecuteStatement": {"Statement": decoy, "Statements": [update]},
    }
    for operation, payload in bodies.items():
        body = json.dumps(payload).encode()
        target = f"DynamoDB_20120810.{operation}"
        status, answer = post(url, signed(url, body, READER_KEY, READER_SECRET, target), body)
        assert status == 400, (operation, answer)
        assert answer["__type"] == "com.amazon.coral.service#AccessDeniedException"
        assert "dynamodb:PartiQLUpdate" in answer["message"]
    assert upstream_calls(stack) == before
    straight = dynamodb_client(stack.moto.url).get_item(TableName=table, Key=key)
    assert straight["Item"]["v"] == {"S": "x"}
    # The same transaction from a key that may write goes through: the refusal was the key's.
    body = json.dumps(bodies["ExecuteTransaction"]).encode()
    target = "DynamoDB_20120810.ExecuteTransaction"
    status, answer = post(url, signed(url, body, target=target), body)
    assert status == 200, answer
    straight = dynamodb_client(stack.moto.url).get_item(TableName=table, Key=key)
    assert straight["Item"]["v"] == {"S": "written"}


def test_a_partiql_write_beside_a_decoy_select_drops_the_cached_item(
    stack: Stack, table: str
) -> None:
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    proxy = orders(stack)
    cache = [
        proxy.get_item(TableName=table, Key=key)["ResponseMetadata"]["HTTPHeaders"][
            "x-daxproxy-cache"
        ]
        for _ in range(2)
    ]
    assert cache == ["miss", "hit"]
    update = {
        "Statement": f'UPDATE "{table}" SET v = ? WHERE pk = ? AND sk = ?',
        "Parameters": [{"S": "new"}, {"S": "a"}, {"N": "1"}],
    }
    payload = {
        "Statement": f"SELECT * FROM \"{table}\" WHERE pk = 'a'",
        "Statements": [update],
    }
    body = json.dumps(payload).encode()
    url = stack.proxy.url
    target = "DynamoDB_20120810.BatchExecuteStatement"
    status, answer = post(url, signed(url, body, target=target), body)
    assert status == 200, answer
    assert "Error" not in answer["Responses"][0], answer
    assert stack.forwarder.count("BatchExecuteStatement") == 1
    assert proxy.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "new"}


@pytest.mark.parametrize(
    ("text", "environ", "problem"),
    [
        (None, {}, "cannot read"),
        (f'[[keys]\nsecret_access_key = "{ORDERS_SECRET}"', {}, "is not valid TOML"),
        (AUTH_FILE, {}, f"environment variable '{OTHER_SECRET_ENV}' is not set"),
        (AUTH_FILE.replace(OTHER_KEY, ORDERS_KEY), {OTHER_SECRET_ENV: OTHER_SECRET}, "repeats"),
    ],
)
def test_a_bad_auth_file_stops_start_up_with_exit_code_2(
    tmp_path: Path, text: str | None, environ: dict[str, str], problem: str
) -> None:
    path = tmp_path / "auth.toml"
    if text is not None:
        path.write_text(text)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "daxproxy", "--upstream", "http://127.0.0.1:9"),
            *("--auth-file", str(path), "--port", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**TEST_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environ},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "'auth_file'" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr
    assert ORDERS_SECRET not in result.stderr and OTHER_SECRET not in result.stderr
