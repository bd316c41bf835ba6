"""The wire codec: targets, bodies, CRCs, request ids and the headers that cross the proxy."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from daxproxy.core import wire
from daxproxy.core.errors import (
    InternalServerError,
    MethodNotAllowedException,
    RequestEntityTooLargeException,
    SerializationException,
    UnknownOperationException,
)


@pytest.mark.parametrize(
    ("header", "prefix", "operation", "streams"),
    [
        ("DynamoDB_20120810.GetItem", "DynamoDB_20120810", "GetItem", False),
        (
            "DynamoDB_20120810.SomeFutureOperation",
            "DynamoDB_20120810",
            "SomeFutureOperation",
            False,
        ),
        ("DynamoDBStreams_20120810.GetRecords", "DynamoDBStreams_20120810", "GetRecords", True),
        ("DynamoDB_20111205.Query", "DynamoDB_20111205", "Query", False),
        (" DynamoDB_20120810.Scan ", "DynamoDB_20120810", "Scan", False),
    ],
)
def test_routable_targets(header: str, prefix: str, operation: str, streams: bool) -> None:
    target = wire.parse_target(header)
    assert (target.prefix, target.operation, target.is_streams) == (prefix, operation, streams)
    assert target.header == f"{prefix}.{operation}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "GetItem",
        "DynamoDB_20120810",
        "DynamoDB_20120810.",
        "DynamoDB_20991231.GetItem",
        "dynamodb_20120810.GetItem",
        "Kinesis_20131202.GetRecords",
        "DynamoDB_20120810.Get Item",
        "DynamoDB_20120810.GetItem.Extra",
        "DynamoDB_20120810.1GetItem",
        "DynamoDB_20120810." + "A" * 200,
    ],
)
def test_unroutable_targets(header: str | None) -> None:
    with pytest.raises(UnknownOperationException):
        wire.parse_target(header)


PAYLOAD = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, PAYLOAD),
        ("identity", PAYLOAD),
        ("gzip", gzip.compress(PAYLOAD, mtime=0)),
        ("GZIP", gzip.compress(PAYLOAD, mtime=0)),
        ("x-gzip", gzip.compress(PAYLOAD, mtime=0)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", _raw_deflate(PAYLOAD)),
        ("deflate, gzip", gzip.compress(zlib.compress(PAYLOAD), mtime=0)),
    ],
)
def test_decode_content(encoding: str | None, body: bytes) -> None:
    assert wire.decode_content(body, encoding, limit=1024) == PAYLOAD


def test_a_gzip_body_of_several_members_is_decoded_whole() -> None:
    # RFC 1952 2.2: a gzip file is a series of members; DynamoDB decodes them all.
    half = len(PAYLOAD) // 2
    body = gzip.compress(PAYLOAD[:half]) + gzip.compress(PAYLOAD[half:])
    assert wire.decode_content(body, "gzip", limit=1024) == PAYLOAD
    three = b"".join(gzip.compress(part) for part in (b'{"a":', b"1", b"}"))
    assert wire.decode_content(three, "gzip", limit=1024) == b'{"a":1}'


def test_several_gzip_members_are_bounded_by_the_limit_together() -> None:
    body = gzip.compress(b"x" * 600) + gzip.compress(b"y" * 600)
    with pytest.raises(RequestEntityTooLargeException):
        wire.decode_content(body, "gzip", limit=1000)
    assert len(wire.decode_content(body, "gzip", limit=1200)) == 1200


# Observed on DynamoDB itself (issue 13): a body its Content-Encoding cannot undo (data that
# is not compressed, an empty body, a truncated stream) is answered 500 InternalServerError,
# not a SerializationException; the proxy answers it so and forwards nothing.
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", PAYLOAD),
        ("gzip", b""),
        ("gzip", gzip.compress(PAYLOAD, mtime=0)[:-12]),
        ("gzip", gzip.compress(PAYLOAD, mtime=0) + b"not a second member"),
        ("gzip", gzip.compress(PAYLOAD, mtime=0) + gzip.compress(PAYLOAD, mtime=0)[:-12]),
        ("deflate", b"not deflate at all"),
        ("deflate", b""),
        ("deflate", zlib.compress(PAYLOAD)[:-6]),
    ],
)
def test_undecodable_content_is_an_internal_server_error(encoding: str, body: bytes) -> None:
    with pytest.raises(InternalServerError) as raised:
        wire.decode_content(body, encoding, limit=1024)
    assert raised.value.status == 500


def test_an_unsupported_content_encoding_is_a_serialization_error() -> None:
    with pytest.raises(SerializationException):
        wire.decode_content(PAYLOAD, "br", limit=1024)


def test_decoding_stops_at_the_limit() -> None:
    bomb = gzip.compress(b" " * 10_000_000)
    with pytest.raises(RequestEntityTooLargeException):
        wire.decode_content(bomb, "gzip", limit=1_000_000)
    assert wire.decode_content(gzip.compress(b"x" * 1000), "gzip", limit=1000) == b"x" * 1000


@pytest.mark.parametrize(
    "body", [b"", b"  ", b"not json", b"{", b"[]", b'"a"', b"1", b"null", b"true", b'{"a":1}x']
)
def test_bodies_that_are_not_a_json_object(body: bytes) -> None:
    with pytest.raises(SerializationException):
        wire.parse_json_object(body)


def test_json_object_body() -> None:
    assert wire.parse_json_object(b' {"TableName": "t"} ') == {"TableName": "t"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Values any CRC32 implementation gives (zlib's check value for "123456789").
        (b"123456789", "3421780262"),
        (b"", "0"),
        (b'{"Item":{"pk":{"S":"1"}}}', str(zlib.crc32(b'{"Item":{"pk":{"S":"1"}}}'))),
    ],
)
def test_crc32_is_unsigned_decimal(body: bytes, expected: str) -> None:
    assert wire.crc32(body) == expected


def test_crc_of_a_body_with_the_high_bit_set_is_unsigned() -> None:
    body = next(b for b in (str(i).encode() for i in range(1000)) if zlib.crc32(b) >= 2**31)
    assert int(wire.crc32(body)) == zlib.crc32(body) >= 2**31


def test_request_ids_are_fresh_and_shaped_like_dynamodbs() -> None:
    ids = {wire.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for request_id in ids:
        assert len(request_id) == 52
        assert request_id.isalnum() and request_id.upper() == request_id


def _headers(response: wire.WireResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers}


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [
        (SerializationException("m"), 400, "com.amazon.coral.service#SerializationException"),
        (UnknownOperationException("m"), 400, "com.amazon.coral.service#UnknownOperationException"),
        (
            RequestEntityTooLargeException("m"),
            413,
            "com.amazon.coral.service#RequestEntityTooLargeException",
        ),
        (MethodNotAllowedException("m"), 405, "com.amazon.coral.service#MethodNotAllowedException"),
        (InternalServerError("m"), 500, "com.amazonaws.dynamodb.v20120810#InternalServerError"),
    ],
)
def test_error_responses_have_dynamodbs_shape(error: Exception, status: int, type_: str) -> None:
    response = wire.error_response(error)  # type: ignore[arg-type]
    assert response.status == status
    assert orjson.loads(response.body) == {"__type": type_, "message": "m"}
    headers = _headers(response)
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert headers["x-amz-crc32"] == str(zlib.crc32(response.body))
    assert len(headers["x-amzn-requestid"]) == 52
    assert ("allow" in headers) == (status == 405)


def test_a_body_the_proxy_builds_gets_its_own_crc() -> None:
    body = orjson.dumps({"Item": {"pk": {"S": "é"}}})
    response = wire.json_response(body)
    assert _headers(response)["x-amz-crc32"] == str(zlib.crc32(body) & 0xFFFFFFFF)


def test_relay_keeps_the_upstreams_answer_and_drops_hop_by_hop_headers() -> None:
    body = b'{"Item":{}}'
    upstream = [
        ("Server", "Werkzeug"),
        ("Date", "Sat, 28 Nov 2026 15:14:46 GMT"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("x-amzn-RequestId", "ABC"),
        ("x-amz-crc32", "12345"),
        ("Content-Length", "11"),
        ("Connection", "close"),
        ("Content-Encoding", "gzip"),
        ("Access-Control-Allow-Origin", "*"),
    ]
    response = wire.relay_response(200, upstream, body)
    assert response.body == body and response.status == 200
    assert response.headers == [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("x-amzn-RequestId", "ABC"),
        ("x-amz-crc32", "12345"),  # the body is unchanged, so the upstream's CRC stands
        ("Content-Encoding", "gzip"),
        ("Access-Control-Allow-Origin", "*"),
    ]


def test_relay_adds_what_the_upstream_left_out() -> None:
    body = b'{"TableNames":[]}'
    headers = _headers(wire.relay_response(200, [], body))
    assert headers["x-amz-crc32"] == str(zlib.crc32(body))
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert len(headers["x-amzn-requestid"]) == 52


def shaped(headers: list[tuple[str, str]], raw: bool) -> wire.Headers:
    """Headers as decoded pairs, or raw as they come off the wire."""
    if not raw:
        return headers
    return wire.RawHeaders([(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers])


RAW_OR_NOT = pytest.mark.parametrize("raw", [False, True], ids=["decoded", "raw"])


@RAW_OR_NOT
def test_upstream_headers_drop_the_clients_signature_and_hop_headers(raw: bool) -> None:
    client = [
        ("Host", "localhost:8111"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=..."),
        ("X-Amz-Date", "20261128T000000Z"),
        ("X-Amz-Security-Token", "token"),
        ("Content-Length", "10"),
        ("Connection", "keep-alive"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
        ("Content-Encoding", "gzip"),
        ("User-Agent", "Boto3/1.0"),
        ("amz-sdk-invocation-id", "abc"),
    ]
    forwarded = wire.upstream_request_headers(shaped(client, raw))
    assert isinstance(forwarded, wire.RawHeaders) is raw  # raw ones are never decoded
    assert list(forwarded) == [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
        ("Content-Encoding", "gzip"),
        ("User-Agent", "Boto3/1.0"),
        ("amz-sdk-invocation-id", "abc"),
        ("Accept-Encoding", "identity"),
    ]


@RAW_OR_NOT
def test_upstream_headers_keep_the_clients_accept_encoding(raw: bool) -> None:
    headers = wire.upstream_request_headers(shaped([("accept-encoding", "gzip")], raw))
    assert list(headers) == [("accept-encoding", "gzip")]


@RAW_OR_NOT
def test_a_header_is_found_whatever_its_case(raw: bool) -> None:
    headers = shaped([("X-Amzn-RequestID", "R1"), ("x-amzn-requestid", "R2"), ("A", "\xe9")], raw)
    assert wire.header(headers, "x-amzn-requestid") == "R1"
    assert wire.header(headers, "a") == "\xe9"
    assert wire.header(headers, "b") is None
