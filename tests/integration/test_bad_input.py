"""Bad input gets DynamoDB's error shape and the right status, and the proxy serves on.

Each case goes to the real proxy process; after each, a valid request must still succeed,
and nothing malformed may reach the upstream (moto answers malformed input with an HTML
500 page, so a leak would show as a wrong status or body).
"""

from __future__ import annotations

import gzip
import http.client
from urllib.parse import urlsplit

import orjson
import pytest

from tests.integration.conftest import Endpoints

TARGET = "DynamoDB_20120810.ListTables"


def send(
    url: str, method: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def assert_still_serving(url: str) -> None:
    status, _, body = send(url, "POST", b"{}", {"X-Amz-Target": TARGET, **SIGNED})
    assert status == 200 and "TableNames" in orjson.loads(body)


# Moto reads the region from the credential scope; the proxy signs anew anyway.
SIGNED = {
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 "
    "Credential=testing/20261128/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
}


@pytest.mark.parametrize(
    ("method", "body", "headers", "status", "code"),
    [
        ("POST", b"this is not json", {"X-Amz-Target": TARGET}, 400, "SerializationException"),
        ("POST", b"[1,2,3]", {"X-Amz-Target": TARGET}, 400, "SerializationException"),
        ("POST", b"", {"X-Amz-Target": TARGET}, 400, "SerializationException"),
        ("POST", b'{"a":', {"X-Amz-Target": TARGET}, 400, "SerializationException"),
        ("POST", b"\xff\xfe\x00", {"X-Amz-Target": TARGET}, 400, "SerializationException"),
        # A body its Content-Encoding cannot undo: DynamoDB's own answer is a 500
        # InternalServerError (observed on DynamoDB, issue 13), and so is the proxy's.
        (
            "POST",
            b"not gzip",
            {"X-Amz-Target": TARGET, "Content-Encoding": "gzip"},
            500,
            "InternalServerError",
        ),
        (
            "POST",
            b"",
            {"X-Amz-Target": TARGET, "Content-Encoding": "gzip"},
            500,
            "InternalServerError",
        ),
        ("POST", b"{}", {}, 400, "UnknownOperationException"),
        ("POST", b"{}", {"X-Amz-Target": "ListTables"}, 400, "UnknownOperationException"),
        ("POST", b"{}", {"X-Amz-Target": "DynamoDB_20120810."}, 400, "UnknownOperationException"),
        (
            "POST",
            b"{}",
            {"X-Amz-Target": "S3_20060301.ListBuckets"},
            400,
            "UnknownOperationException",
        ),
        (
            "POST",
            b"{}",
            {"X-Amz-Target": "DynamoDB_20120810.<script>"},
            400,
            "UnknownOperationException",
        ),
        ("GET", b"", {}, 405, "MethodNotAllowedException"),
        ("PUT", b"{}", {"X-Amz-Target": TARGET}, 405, "MethodNotAllowedException"),
        ("DELETE", b"", {}, 405, "MethodNotAllowedException"),
        (
            "POST",
            b"x" * (16 * 1024 * 1024 + 1),
            {"X-Amz-Target": TARGET},
            413,
            "RequestEntityTooLargeException",
        ),
        (
            "POST",
            gzip.compress(b'{"pad":"' + b" " * (17 * 1024 * 1024) + b'"}', mtime=0),
            {"X-Amz-Target": TARGET, "Content-Encoding": "gzip"},
            413,
            "RequestEntityTooLargeException",
        ),
    ],
)
def test_bad_input(  # noqa: PLR0917 - one parameter per column of the table above
    endpoints: Endpoints, method: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    got_status, got_headers, got_body = send(endpoints.proxy, method, body, {**SIGNED, **headers})
    error = orjson.loads(got_body)
    assert (got_status, error["__type"].split("#")[1]) == (status, code)
    assert error["message"]
    assert got_headers["content-type"] == "application/x-amz-json-1.0"
    assert len(got_headers["x-amzn-requestid"]) == 52
    assert_still_serving(endpoints.proxy)
