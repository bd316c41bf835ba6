"""The SigV4 verifier against requests botocore's own SigV4Auth signed: what passes, and
DynamoDB's error for each way a request can be wrong."""

from __future__ import annotations

import calendar
import gzip
import hashlib
import time
from collections.abc import Callable

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from daxproxy.core import sigv4_verify
from daxproxy.core.errors import (
    DynamoDBError,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

KEY = "AKIDORDERSAPP"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
HOST = "127.0.0.1:8111"
BODY = b'{"TableName":"Orders","Key":{"pk":{"S":"1"}}}'
SKEW = 300.0


class Signed:
    """A request as it reaches the proxy after botocore signed it."""

    def __init__(
        self,
        headers: list[tuple[str, str]],
        body: bytes,
        raw_path: str,
        signed_at: float | None = None,
    ) -> None:
        self.headers = headers
        self.body = body
        self.raw_path = raw_path
        if signed_at is None:
            stamp = dict(headers)["X-Amz-Date"]
            signed_at = float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
        self.signed_at = signed_at

    def replace(self, name: str, value: str | None) -> Signed:
        headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            headers.append((name, value))
        return Signed(headers, self.body, self.raw_path, self.signed_at)


def sign(
    body: bytes = BODY,
    *,
    key: str = KEY,
    secret: str = SECRET,
    region: str = REGION,
    service: str = "dynamodb",
    token: str | None = None,
    path: str = "/",
    extra: dict[str, str] | None = None,
) -> Signed:
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}{path}",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.GetItem",
            **(extra or {}),
        },
    )
    SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    # What an HTTP client adds after signing; none of it is signed.
    headers = [("Host", HOST), *request.headers.items(), ("User-Agent", "test"), ("Accept", "*/*")]
    return Signed(headers, body, path)


def verify(
    request: Signed,
    *,
    now: float | None = None,
    secrets: Callable[[str], str | None] = {KEY: SECRET}.get,
    region: str = REGION,
) -> str:
    return sigv4_verify.verify(
        method="POST",
        raw_path=request.raw_path,
        headers=request.headers,
        body=request.body,
        region=region,
        secret_of=secrets,
        now=request.signed_at if now is None else now,
        skew_seconds=SKEW,
    )


def refused(request: Signed, **options: object) -> DynamoDBError:
    with pytest.raises(DynamoDBError) as caught:
        verify(request, **options)  # type: ignore[arg-type]
    return caught.value


def test_a_good_signature_passes_and_names_its_key() -> None:
    assert verify(sign()) == KEY


@pytest.mark.parametrize(
    "body", [b"", b"{}", gzip.compress(BODY, mtime=0), '{"a":{"S":"é"}}'.encode(), b"x" * 100_000]
)
def test_any_body_as_sent_passes(body: bytes) -> None:
    assert verify(sign(body)) == KEY


def test_a_path_and_query_are_part_of_the_signature() -> None:
    request = sign(path="/some%20where/?b=2&a=1&c=%2F")
    assert verify(request) == KEY
    moved = Signed(request.headers, request.body, "/elsewhere/?b=2&a=1&c=%2F")
    assert refused(moved).message == sigv4_verify.MISMATCH


def test_headers_that_were_not_signed_may_change() -> None:
    request = sign().replace("User-Agent", "another").replace("X-Forwarded-For", "10.0.0.1")
    assert verify(request) == KEY


def test_a_declared_payload_hash_is_honoured_and_checked() -> None:
    declared = hashlib.sha256(BODY).hexdigest()
    request = sign(extra={"X-Amz-Content-SHA256": declared})
    assert verify(request) == KEY
    tampered = Signed(request.headers, BODY + b" ", request.raw_path, request.signed_at)
    assert isinstance(refused(tampered), InvalidSignatureException)
    unsigned = sign(extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert refused(unsigned).message == sigv4_verify.MISMATCH


def test_a_wrong_secret_is_an_invalid_signature() -> None:
    error = refused(sign(secret="not-the-secret"))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == sigv4_verify.MISMATCH
    assert error.type == "com.amazon.coral.service#InvalidSignatureException"
    assert error.status == 400


def test_a_tampered_body_is_an_invalid_signature() -> None:
    request = sign()
    tampered = Signed(request.headers, BODY.replace(b'"1"', b'"2"'), request.raw_path)
    assert refused(tampered).message == sigv4_verify.MISMATCH


def test_a_tampered_signed_header_is_an_invalid_signature() -> None:
    tampered = sign().replace("X-Amz-Target", "DynamoDB_20120810.DeleteItem")
    assert refused(tampered).message == sigv4_verify.MISMATCH
    moved = sign().replace("Host", "evil.example:8111")
    assert refused(moved).message == sigv4_verify.MISMATCH


def test_within_the_skew_either_way_passes() -> None:
    request = sign()
    assert verify(request, now=request.signed_at + SKEW - 1) == KEY
    assert verify(request, now=request.signed_at - SKEW + 1) == KEY


def test_a_stale_date_has_expired() -> None:
    request = sign()
    now = request.signed_at + SKEW + 60
    error = refused(request, now=now)
    assert isinstance(error, InvalidSignatureException)
    stamp = dict(request.headers)["X-Amz-Date"]
    earliest = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - SKEW))
    current = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    assert error.message == (
        f"Signature expired: {stamp} is now earlier than {earliest} ({current} - 5 min.)"
    )


def test_a_future_date_is_not_yet_current() -> None:
    request = sign()
    now = request.signed_at - SKEW - 60
    error = refused(request, now=now)
    assert isinstance(error, InvalidSignatureException)
    assert error.message.startswith("Signature not yet current: ")
    assert error.message.endswith(" + 5 min.)")


def test_an_unknown_key_is_unrecognized() -> None:
    error = refused(sign(key="AKIDSTRANGER"))
    assert isinstance(error, UnrecognizedClientException)
    assert error.message == "The security token included in the request is invalid."
    assert error.type == "com.amazon.coral.service#UnrecognizedClientException"


def test_a_session_token_is_unrecognized_even_with_a_known_key() -> None:
    error = refused(sign(token="FwoGZXIvYXdzEJr//////////wEaDExample"))
    assert isinstance(error, UnrecognizedClientException)
    assert error.message == "The security token included in the request is invalid"
    # A temporary key the proxy does not know fails on the key first.
    stranger = refused(sign(key="ASIATEMPORARY", token="tok"))
    assert stranger.message == "The security token included in the request is invalid."


def test_a_scope_for_another_region_or_service_is_invalid() -> None:
    region = refused(sign(region="eu-west-1"))
    assert isinstance(region, InvalidSignatureException)
    assert region.message == "Credential should be scoped to a valid region, not 'eu-west-1'. "
    service = refused(sign(service="s3"))
    assert service.message == "Credential should be scoped to correct service: 'dynamodb'. "


def test_no_authorization_is_a_missing_token() -> None:
    for value in (None, "Bearer abc", "  "):
        error = refused(sign().replace("Authorization", value))
        assert isinstance(error, MissingAuthenticationTokenException)
        assert error.message == "Request is missing Authentication Token"
        assert error.type == "com.amazon.coral.service#MissingAuthenticationTokenException"


def test_an_authorization_without_its_parts_is_incomplete() -> None:
    header = "AWS4-HMAC-SHA256 Credential=AKIDORDERSAPP/20261129/us-east-1/dynamodb/aws4_request"
    error = refused(sign().replace("Authorization", header))
    assert isinstance(error, IncompleteSignatureException)
    assert error.message == (
        "Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. "
        f"Authorization={header}"
    )
    undated = refused(sign().replace("X-Amz-Date", None))
    assert "requires existence of either a 'X-Amz-Date' or a 'Date' header" in undated.message


def test_malformed_authorizations_are_incomplete() -> None:
    request = sign()
    good = dict(request.headers)["Authorization"]
    no_equals = good.replace("Credential=", "Credential ", 1)
    assert (
        "not a valid key=value pair (missing equal-sign)"
        in refused(request.replace("Authorization", no_equals)).message
    )
    algorithm = good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1)
    assert refused(request.replace("Authorization", algorithm)).message == (
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now). "
    )
    short = good.replace("/aws4_request", "", 1)
    error = refused(request.replace("Authorization", short))
    assert isinstance(error, IncompleteSignatureException)
    assert error.message.startswith("Credential must have exactly 5 slash-delimited elements")
    dated = refused(request.replace("X-Amz-Date", "2026"))
    assert isinstance(dated, IncompleteSignatureException)
    assert dated.message.startswith("Date must be in ISO-8601 'basic format'. Got '2026'.")


def test_host_must_be_signed() -> None:
    request = sign()
    good = dict(request.headers)["Authorization"]
    unsigned = good.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;", 1)
    assert unsigned != good
    error = refused(request.replace("Authorization", unsigned))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == "'Host' must be a 'SignedHeader' in the AWS Authorization."


def test_a_scope_date_other_than_the_request_date_is_invalid() -> None:
    request = sign()
    good = dict(request.headers)["Authorization"]
    stamp = dict(request.headers)["X-Amz-Date"]
    shifted = good.replace(f"/{stamp[:8]}/", "/19990101/", 1)
    error = refused(request.replace("Authorization", shifted))
    assert isinstance(error, InvalidSignatureException)
    assert error.message.startswith("Date in Credential scope does not match YYYYMMDD")


def test_a_date_header_may_stand_for_x_amz_date() -> None:
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}/",
        data=BODY,
        headers={
            "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)),
            "X-Amz-Target": "DynamoDB_20120810.GetItem",
            "Host": HOST,
        },
    )
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(KEY, SECRET), "dynamodb", REGION)
    signature = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    headers = [
        *request.headers.items(),
        (
            "Authorization",
            f"AWS4-HMAC-SHA256 Credential={KEY}/{stamp[:8]}/{REGION}/dynamodb/aws4_request, "
            f"SignedHeaders=date;host;x-amz-target, Signature={signature}",
        ),
    ]
    assert (
        sigv4_verify.verify(
            method="POST",
            raw_path="/",
            headers=headers,
            body=BODY,
            region=REGION,
            secret_of={KEY: SECRET}.get,
            now=now,
            skew_seconds=SKEW,
        )
        == KEY
    )
