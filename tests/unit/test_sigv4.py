"""The proxy's SigV4 signer gives botocore's signature for every shape of upstream request."""

from __future__ import annotations

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from daxproxy.core import sigv4


def botocore_signature(
    headers: dict[str, str], body: bytes, creds: ReadOnlyCredentials, region: str
) -> str:
    request = AWSRequest(
        method="POST", url=f"https://{headers['Host']}/", data=body, headers=headers
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(creds, "dynamodb", region)
    return str(
        auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    )


@pytest.mark.parametrize(
    ("host", "target", "body", "region", "token"),
    [
        (
            "dynamodb.us-east-1.amazonaws.com",
            "DynamoDB_20120810.GetItem",
            b'{"TableName":"t"}',
            "us-east-1",
            None,
        ),
        (
            "127.0.0.1:4566",
            "DynamoDB_20120810.PutItem",
            b'{"Item":{"a":{"S":"\xc3\xa9"}}}',
            "eu-west-1",
            "tok/en+=",
        ),
        (
            "streams.dynamodb.ap-south-1.amazonaws.com",
            "DynamoDBStreams_20120810.GetRecords",
            b"{}",
            "ap-south-1",
            None,
        ),
        ("[::1]:8000", "DynamoDB_20120810.Query", b"", "cn-north-1", "session"),
        ("localhost:8000", "DynamoDB_20120810.BatchWriteItem", b"x" * 300_000, "us-west-2", None),
    ],
)
def test_signatures_match_botocores(
    host: str, target: str, body: bytes, region: str, token: str | None
) -> None:
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    amz_date = "20261128T151413Z"
    signed = dict(
        sigv4.sign(
            host=host,
            target=target,
            content_type="application/x-amz-json-1.0",
            body=body,
            amz_date=amz_date,
            region=region,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            token=token,
        )
    )
    headers = {
        "Host": host,
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": target,
        "X-Amz-Date": amz_date,
        **({"X-Amz-Security-Token": token} if token else {}),
    }
    expected = botocore_signature(headers, body, creds, region)
    signed_names = ";".join(sorted(name.lower() for name in headers))
    assert signed["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/{region}/dynamodb/aws4_request, "
        f"SignedHeaders={signed_names}, Signature={expected}"
    )
    assert signed["X-Amz-Date"] == amz_date
    assert signed.get("X-Amz-Security-Token") == token
    # The header lines the upstream client writes carry the same headers, in this order.
    lines = sigv4.Template(
        host=host,
        target=target,
        content_type="application/x-amz-json-1.0",
        date=amz_date[:8],
        region=region,
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        token=token,
    ).lines(amz_date, body)
    assert lines.endswith("\r\n")
    assert [tuple(line.split(": ", 1)) for line in lines[:-2].split("\r\n")] == [
        *headers.items(),
        ("Authorization", signed["Authorization"]),
    ]


def test_the_signing_key_changes_with_the_day_and_region() -> None:
    keys = {
        sigv4.signing_key("secret", "20261128", "us-east-1"),
        sigv4.signing_key("secret", "20261129", "us-east-1"),
        sigv4.signing_key("secret", "20261128", "eu-west-1"),
        sigv4.signing_key("other", "20261128", "us-east-1"),
    }
    assert len(keys) == 4
