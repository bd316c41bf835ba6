"""DynamoDB's JSON wire protocol, without I/O.

In: the ``X-Amz-Target`` header, the raw request body with its ``Content-Encoding``, and the
client's headers. Out: a :class:`Target`, the decoded JSON request, the headers to send
upstream, and :class:`WireResponse` values whose headers carry a correct ``x-amz-crc32`` and
``x-amzn-RequestId``. Every rule here is a plain function, tested with plain calls.
"""

from __future__ import annotations

import itertools
import re
import secrets
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from daxproxy.core.errors import (
    DynamoDBError,
    InternalServerError,
    RequestEntityTooLargeException,
    SerializationException,
    UnknownOperationException,
)

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
REQUEST_ID_HEADER = "x-amzn-RequestId"
CRC32_HEADER = "x-amz-crc32"

Headers = Iterable[tuple[str, str]]


class RawHeaders:
    """Header fields as they came off the wire, decoded (latin-1) only when iterated: a
    cache hit never reads a request's, and those a forwarded request keeps go upstream as
    the bytes they came as (:func:`upstream_request_headers`, :func:`header`)."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.fields = fields

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, value in self.fields:
            yield name.decode("latin-1"), value.decode("latin-1")


# The API versions DynamoDB routes. The 2011 version is long retired, but DynamoDB still
# answers it with its own error, so the proxy forwards it rather than inventing one.
SERVICE_PREFIXES = frozenset({"DynamoDB_20120810", "DynamoDB_20111205", "DynamoDBStreams_20120810"})
STREAMS_PREFIX = "DynamoDBStreams_20120810"
_OPERATION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``X-Amz-Target``: ``<prefix>.<operation>``."""

    prefix: str
    operation: str

    @property
    def is_streams(self) -> bool:
        return self.prefix == STREAMS_PREFIX

    @property
    def header(self) -> str:
        return f"{self.prefix}.{self.operation}"


@lru_cache(maxsize=512)
def parse_target(value: str | None) -> Target:
    """Parse ``X-Amz-Target``; an unknown operation under a known prefix is still a Target.

    New DynamoDB operations must reach the upstream, so only the prefix is checked against a
    fixed set; the operation only has to look like an operation name.
    """
    if not value:
        raise UnknownOperationException("Missing X-Amz-Target header")
    prefix, dot, operation = value.strip().partition(".")
    if not dot or prefix not in SERVICE_PREFIXES or not _OPERATION_NAME.match(operation):
        raise UnknownOperationException(f"Cannot route X-Amz-Target {value[:200]!r}")
    return Target(prefix, operation)


def decode_content(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate, identity) without producing over ``limit`` bytes.

    The decoded form is only for the proxy to read; the upstream gets the body as sent. A
    gzip body may be several members one after another (RFC 1952 2.2): all are decoded. A
    body its coding cannot undo (not compressed, empty, truncated) is InternalServerError
    (500), as DynamoDB itself answers it (observed on DynamoDB, issue 13), and goes nowhere.
    """
    if not content_encoding:
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # the last coding applied is listed last
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, _GZIP, limit)
        elif coding == "deflate":
            # RFC 9110 deflate is zlib-wrapped, but some clients send raw deflate.
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit)
            except InternalServerError:
                body = _inflate(body, -zlib.MAX_WBITS, limit)
        else:
            raise SerializationException(f"Unsupported Content-Encoding {coding!r}")
    return body


def header(headers: Headers, name: str) -> str | None:
    """The first value of the header ``name`` (lower case), whatever its case on the wire."""
    if type(headers) is RawHeaders:
        raw = name.encode("latin-1")
        return next((v.decode("latin-1") for k, v in headers.fields if k.lower() == raw), None)
    return next((v for k, v in headers if k.lower() == name), None)


def decode_body(headers: Headers, body: bytes, limit: int) -> bytes:
    """A message's body decoded by its own ``Content-Encoding``."""
    return decode_content(body, header(headers, "content-encoding"), limit)


_GZIP = zlib.MAX_WBITS | 16
UNDECODABLE_MESSAGE = "The request body could not be decoded by its Content-Encoding"


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """One stream (zlib, raw deflate), or every member of a gzip body."""
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1 - size)  # never 0: size <= limit here
        except zlib.error as exc:
            raise InternalServerError(f"{UNDECODABLE_MESSAGE}: {exc}") from None
        size += len(out)
        if size > limit:
            raise RequestEntityTooLargeException(
                f"Decompressed request body exceeds the limit of {limit} bytes"
            )
        if not inflater.eof:  # an empty body too
            raise InternalServerError(f"{UNDECODABLE_MESSAGE}: truncated compressed data")
        parts.append(out)
        data = inflater.unused_data
        if wbits != _GZIP or not data:
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or SerializationException as DynamoDB gives it."""
    if not body.strip():
        raise SerializationException("Request body is empty; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SerializationException(f"Request body is not valid JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise SerializationException(
            f"Start of {_json_kind(payload)} found where a structure was expected"
        )
    return payload


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


# Headers that describe one hop, or that the proxy re-creates: never copied across.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "expect",
    }
)
# The client's signature covers the proxy's host; the proxy signs the upstream request anew.
_CLIENT_SIGNATURE = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)
_NOT_FORWARDED_UPSTREAM = _HOP_BY_HOP | _CLIENT_SIGNATURE
_NOT_RETURNED_TO_CLIENT = _HOP_BY_HOP | {"date", "server"}
_NOT_FORWARDED_RAW = frozenset(name.encode() for name in _NOT_FORWARDED_UPSTREAM)


def upstream_request_headers(client_headers: Headers) -> Headers:
    """The client's headers that go upstream unchanged (signing adds its own); raw ones
    stay raw (:class:`RawHeaders`), never decoded.

    ``Accept-Encoding`` is always set: without it an HTTP client library would ask for
    gzip on the client's behalf and the client would get a body it did not ask for.
    """
    if type(client_headers) is RawHeaders:
        kept = []
        encoding = False
        for name, value in client_headers.fields:
            lower = name.lower()
            if lower not in _NOT_FORWARDED_RAW:
                kept.append((name, value))
                encoding = encoding or lower == b"accept-encoding"
        if not encoding:
            kept.append((b"Accept-Encoding", b"identity"))
        return RawHeaders(kept)
    out = [(k, v) for k, v in client_headers if k.lower() not in _NOT_FORWARDED_UPSTREAM]
    if not any(k.lower() == "accept-encoding" for k, _ in out):
        out.append(("Accept-Encoding", "identity"))
    return out


@dataclass(slots=True)
class WireResponse:
    """A complete answer to the client: status, the exact body bytes and their headers."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]


class ReadyAnswer:
    """A 200 answer whose header lines are bytes already (a remembered GetItem hit:
    :meth:`daxproxy.service.proxy.Proxy.quick`). ``lines``: its ``Content-Length`` line,
    its other header lines (``name: value`` and CRLF each) up to its request id's value,
    and those after it with the blank line that ends the head (made once, shared by many
    answers); ``request_id``: the value (fresh); ``body``. The edge writes it as it writes
    a :class:`WireResponse` of the same (:func:`daxproxy.edge.answers.encode`): the status
    line, ``Server`` and ``Date`` first, ``Connection: close`` after the ``Content-Length``
    line when the connection closes, and no body for a HEAD. A plain slotted class: one
    per hit."""

    __slots__ = ("body", "lines", "request_id")

    def __init__(self, lines: tuple[bytes, bytes, bytes], request_id: bytes, body: bytes) -> None:
        self.lines = lines
        self.request_id = request_id
        self.body = body


# A request id is 52 characters of DynamoDB's alphabet (upper case and digits): a random
# prefix drawn once per process, then a 20-digit counter (from 10**19 up: never fewer
# digits, so never padded). Unique without a system call per answer: drawing 32 random
# bytes for each was a tenth of a cache hit's CPU (bench/README.md).
REQUEST_ID_PREFIX = secrets.token_hex(16).upper()
_REQUEST_COUNTER = itertools.count(10**19 + int.from_bytes(secrets.token_bytes(4), "big"))


def new_request_id() -> str:
    """A fresh 52-character request id, never the same twice in a process."""
    return f"{REQUEST_ID_PREFIX}{next(_REQUEST_COUNTER)}"


def new_request_id_tail() -> bytes:
    """What follows :data:`REQUEST_ID_PREFIX` in a fresh request id (:func:`new_request_id`'s
    counter), as bytes: for an answer whose header lines are bytes already."""
    return b"%d" % next(_REQUEST_COUNTER)


def crc32(body: bytes) -> str:
    """``x-amz-crc32``: the unsigned CRC32 of the exact body bytes, in decimal."""
    return str(zlib.crc32(body) & 0xFFFFFFFF)


def json_response(body: bytes, status: int = 200, request_id: str | None = None) -> WireResponse:
    """A response whose body the proxy built: content type, fresh request id, fresh CRC."""
    return WireResponse(
        status,
        body,
        [
            ("Content-Type", JSON_CONTENT_TYPE),
            (REQUEST_ID_HEADER, request_id or new_request_id()),
            (CRC32_HEADER, crc32(body)),
        ],
    )


def encode_error(error: DynamoDBError) -> bytes:
    return orjson.dumps({"__type": error.type, "message": error.message})


def error_response(error: DynamoDBError) -> WireResponse:
    response = json_response(encode_error(error), error.status)
    if error.status == 405:
        response.headers.append(("Allow", "POST"))
    return response


def relay_response(status: int, headers: Headers, body: bytes) -> WireResponse:
    """The upstream's answer, passed through: same status, same body, end-to-end headers.

    The upstream's CRC is kept because the body is unchanged; a missing CRC or request id
    is added, since several SDKs validate the one and log the other.
    """
    out: list[tuple[str, str]] = []
    has_crc = has_request_id = has_content_type = False
    for name, value in headers:
        lower = name.lower()
        if lower in _NOT_RETURNED_TO_CLIENT:
            continue
        if lower == "x-amz-crc32":
            has_crc = True
        elif lower == "x-amzn-requestid":
            has_request_id = True
        elif lower == "content-type":
            has_content_type = True
        out.append((name, value))
    if not has_content_type:
        out.append(("Content-Type", JSON_CONTENT_TYPE))
    if not has_request_id:
        out.append((REQUEST_ID_HEADER, new_request_id()))
    if not has_crc:
        out.append((CRC32_HEADER, crc32(body)))
    return WireResponse(status, body, out)
