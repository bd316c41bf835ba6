"""DAX with an ``auth_file``: the real Python DAX client (``amazon-dax-client``) in front of
moto, through ``python -m daxproxy`` started with an auth file.

The right key works for every data call; a wrong secret is refused at the client's start
with the auth error it raises at once, logged once by the proxy with the key id and the
reason; a key granted only reads of one table is refused a write to it and anything on
another table, with AccessDeniedException, after the client's own retries; the same file
still governs HTTP.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from amazondax import AmazonDaxClient
from amazondax.DaxError import DaxServiceError
from botocore.exceptions import ClientError

from tests.integration.conftest import Endpoints
from tests.integration.harness import NO_RETRIES, REGION, TEST_ENV, ProxyProcess

WRITER_KEY = "AKIDDAXAUTHWRITER001"
WRITER_SECRET = "writer-secret-9Hk2/daxproxy+dax-auth-test-1"
READER_KEY = "AKIDDAXAUTHREADER002"
READER_SECRET = "reader-secret-4Pq7/daxproxy+dax-auth-test-2"
TABLE_A, TABLE_B = "daxauth_a", "daxauth_b"
AUTH_FILE = f"""
[[keys]]
access_key_id = "{WRITER_KEY}"
secret_access_key = "{WRITER_SECRET}"
tables = ["daxauth_*"]
operations = ["read", "write"]

[[keys]]
access_key_id = "{READER_KEY}"
secret_access_key = "{READER_SECRET}"
tables = ["{TABLE_A}"]
operations = ["read"]
"""
REFUSED_LINE = re.compile(r"DAX authorizeConnection refused for key (\S+): (.*)")


@pytest.fixture(scope="module")
def proxy(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    upstream = boto3.client(
        "dynamodb",
        endpoint_url=endpoints.upstream,
        region_name=REGION,
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=NO_RETRIES,
    )
    for table in (TABLE_A, TABLE_B):
        upstream.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    directory = tmp_path_factory.mktemp("dax-auth")
    auth_file = directory / "auth.toml"
    auth_file.write_text(AUTH_FILE)
    process = ProxyProcess(
        "--upstream",
        endpoints.upstream,
        "--auth-file",
        str(auth_file),
        "--data-dir",
        str(directory / "data"),
        "--log-requests",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        os.unlink(process.log_path)
        for table in (TABLE_A, TABLE_B):
            upstream.delete_table(TableName=table)


def dax(proxy: ProxyProcess, key: str, secret: str) -> Any:
    return AmazonDaxClient(
        endpoint_url=f"dax://127.0.0.1:{proxy.port}",
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def http(proxy: ProxyProcess, key: str, secret: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=proxy.url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=NO_RETRIES,
    )


def item(pk: str, sk: int, **more: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **more}


def test_the_right_key_works_for_every_data_call(proxy: ProxyProcess) -> None:
    with dax(proxy, WRITER_KEY, WRITER_SECRET) as client:
        for table in (TABLE_A, TABLE_B):
            client.put_item(TableName=table, Item=item("w", 1, v={"S": "one"}))
        client.update_item(
            TableName=TABLE_A,
            Key=item("w", 1),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "7"}},
        )
        got = client.get_item(TableName=TABLE_A, Key=item("w", 1))
        assert got["Item"] == item("w", 1, v={"S": "one"}, n={"N": "7"})
        page = client.query(
            TableName=TABLE_B,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "w"}},
        )
        assert page["Items"] == [item("w", 1, v={"S": "one"})]
        client.batch_write_item(
            RequestItems={
                TABLE_A: [{"PutRequest": {"Item": item("w", 2)}}],
                TABLE_B: [{"DeleteRequest": {"Key": item("w", 1)}}],
            }
        )
        batch = client.batch_get_item(
            RequestItems={TABLE_A: {"Keys": [item("w", 2)]}, TABLE_B: {"Keys": [item("w", 1)]}}
        )
        assert batch["Responses"] == {TABLE_A: [item("w", 2)], TABLE_B: []}
    # The resource interface, as most DAX code is written, over the same checks.
    resource = AmazonDaxClient.resource(
        endpoint_url=f"dax://127.0.0.1:{proxy.port}",
        region_name=REGION,
        aws_access_key_id=WRITER_KEY,
        aws_secret_access_key=WRITER_SECRET,
    )
    try:
        got = resource.Table(TABLE_A).get_item(Key={"pk": "w", "sk": 2})
        assert got["Item"] == {"pk": "w", "sk": Decimal(2)}
    finally:
        resource.meta.client.close()


def test_a_wrong_secret_is_refused_at_the_clients_start_and_logged_once(
    proxy: ProxyProcess,
) -> None:
    before = REFUSED_LINE.findall(proxy.log())
    with pytest.raises(DaxServiceError) as caught:
        dax(proxy, WRITER_KEY, "not-the-secret")
    error = caught.value
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["Error"]["Message"].startswith(
        "authorizeConnection refused: The request signature we calculated does not match"
    )
    assert error.auth_error and error.codes == [4, 23, 31, 33]
    log = proxy.log()
    refused = REFUSED_LINE.findall(log)[len(before) :]
    # Refused once, and not retried: the client's start gives up on an auth error.
    assert len(refused) == 1
    key, reason = refused[0]
    assert reason.startswith("The request signature we calculated does not match")
    # The key's id is named (the log's redaction hides AKIA ids only); no secret, ever.
    assert key == WRITER_KEY
    assert "not-the-secret" not in log and WRITER_SECRET not in log


def _puts_to_a(log: str) -> list[str]:
    return re.findall(rf"PutItem table={TABLE_A} .* error=(\S+)", log)


def test_a_key_granted_reads_of_one_table_may_do_nothing_else(proxy: ProxyProcess) -> None:
    with dax(proxy, READER_KEY, READER_SECRET) as client:
        client.get_item(TableName=TABLE_A, Key=item("r", 1))  # allowed
        denied_before = _puts_to_a(proxy.log()).count("AccessDeniedException")
        with pytest.raises(ClientError) as put:
            client.put_item(TableName=TABLE_A, Item=item("r", 1))
        assert put.value.response["Error"]["Code"] == "AccessDeniedException"
        assert put.value.response["Error"]["Message"] == (
            f"User: {READER_KEY} is not authorized to perform: dynamodb:PutItem on resource: "
            f"arn:aws:dynamodb:{REGION}:*:table/{TABLE_A} because no entry of the proxy's "
            "auth_file allows it"
        )
        # Refused by the proxy's check each time the client sent it: once and 2 retries.
        assert _puts_to_a(proxy.log()).count("AccessDeniedException") - denied_before == 3
        for call in (
            lambda: client.get_item(TableName=TABLE_B, Key=item("w", 1)),
            lambda: client.put_item(TableName=TABLE_B, Item=item("r", 1)),
        ):
            with pytest.raises(ClientError) as other:
                call()
            assert other.value.response["Error"]["Code"] == "AccessDeniedException"
            assert (
                f"perform: any data operation on resource: arn:aws:dynamodb:{REGION}:*:table/"
                f"{TABLE_B}" in other.value.response["Error"]["Message"]
            )
        assert client.get_item(TableName=TABLE_A, Key=item("w", 2))["Item"] == item("w", 2)
    with dax(proxy, WRITER_KEY, WRITER_SECRET) as writer:
        assert "Item" not in writer.get_item(TableName=TABLE_A, Key=item("r", 1))


def test_the_same_auth_file_still_governs_http(proxy: ProxyProcess) -> None:
    reader = http(proxy, READER_KEY, READER_SECRET)
    assert reader.get_item(TableName=TABLE_A, Key=item("w", 2))["Item"] == item("w", 2)
    for call, code in (
        (lambda: reader.put_item(TableName=TABLE_A, Item=item("h", 1)), "AccessDeniedException"),
        (lambda: reader.get_item(TableName=TABLE_B, Key=item("h", 1)), "AccessDeniedException"),
        (
            lambda: http(proxy, WRITER_KEY, "not-the-secret").get_item(
                TableName=TABLE_A, Key=item("h", 1)
            ),
            "InvalidSignatureException",
        ),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == code
