"""One client call on its way through the service layer, and the ways to answer it.

A :class:`Call` is a request that passed the wire checks: its target, its operation, its
decoded JSON, and its body and headers exactly as the client sent them. :func:`forward`
sends it upstream unchanged; :func:`relay` turns the upstream's answer into the client's,
labelled with what the cache did (``x-daxproxy-cache``: hit, miss or bypass).
:func:`stale` labels a cached answer served past its TTL because the upstream failed.
:func:`hit_response` is a hit's answer from what its cache entry stores; :func:`hit_lines`
its header lines as bytes, for the same answer as a ready one.
"""

from __future__ import annotations

from typing import Any

import orjson

from daxproxy.core import wire
from daxproxy.core.operations import Operation
from daxproxy.core.wire import Headers, Target, WireResponse
from daxproxy.service.upstream import Upstream, UpstreamResponse

CACHE_HEADER = "x-daxproxy-cache"
HIT, MISS, BYPASS = "hit", "miss", "bypass"
# A cached answer served past its TTL (within stale_grace_millis) because the upstream
# failed; the other header says how many milliseconds past its TTL.
STALE = "stale"
STALE_HEADER = "x-daxproxy-stale-millis"
# Headers for the proxy's own upstream requests: plain JSON both ways.
OWN_HEADERS: Headers = (
    ("Content-Type", wire.JSON_CONTENT_TYPE),
    ("Accept-Encoding", "identity"),
)


class Call:
    """``body``: as sent, compressed or not. ``headers``: as the client sent them; the ones
    that may go upstream are chosen only when the call is forwarded, since a cache hit never
    is. A plain slotted class: one per request, a quarter of a frozen dataclass's cost."""

    __slots__ = ("body", "headers", "operation", "payload", "target")

    def __init__(
        self,
        target: Target,
        operation: Operation,
        payload: dict[str, Any],
        body: bytes,
        headers: Headers,
    ) -> None:
        self.target = target
        self.operation = operation
        self.payload = payload
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"Call({self.target.header!r}, {len(self.body)} bytes)"


async def forward(upstream: Upstream, call: Call) -> UpstreamResponse:
    return await upstream.send(
        call.target,
        call.body,
        wire.upstream_request_headers(call.headers),
        retry_safe=call.operation.read_only,
    )


async def send_own(upstream: Upstream, call: Call, payload: dict[str, Any]) -> UpstreamResponse:
    """The call's operation with a body the proxy wrote (a fill, a rewritten update)."""
    return await upstream.send(
        call.target, wire_json(payload), OWN_HEADERS, retry_safe=call.operation.read_only
    )


def wire_json(payload: object) -> bytes:
    return orjson.dumps(payload)


# DynamoDB's answers are at most 16 MiB (a BatchGetItem); this only bounds a broken upstream.
_MAX_ANSWER_BYTES = 64 * 1024 * 1024


def answer_json(answer: UpstreamResponse) -> dict[str, Any]:
    """The upstream's JSON answer, decompressed when the client's Accept-Encoding let the
    upstream compress it."""
    payload: dict[str, Any] = orjson.loads(
        wire.decode_body(answer.headers, answer.body, _MAX_ANSWER_BYTES)
    )
    return payload


def relay(answer: UpstreamResponse, cache: str | None = None) -> WireResponse:
    response = wire.relay_response(answer.status, answer.headers, answer.body)
    if cache is not None:
        response.headers.append((CACHE_HEADER, cache))
    return response


def request_id_of(answer: UpstreamResponse) -> str | None:
    return wire.header(answer.headers, "x-amzn-requestid")


def built(body: bytes, cache: str, request_id: str | None = None) -> WireResponse:
    """An answer the proxy built itself: fresh CRC, and a fresh request id unless the answer
    came from one upstream call whose id it carries."""
    response = wire.json_response(body, request_id=request_id)
    response.headers.append((CACHE_HEADER, cache))
    return response


def hit_response(body: bytes, crc: str) -> WireResponse:
    """A hit's answer from the body and CRC stored with the entry: a fresh request id."""
    return WireResponse(
        200,
        body,
        [
            ("Content-Type", wire.JSON_CONTENT_TYPE),
            (wire.REQUEST_ID_HEADER, wire.new_request_id()),
            (wire.CRC32_HEADER, crc),
            (CACHE_HEADER, HIT),
        ],
    )


# A hit's header lines up to its request id's value after REQUEST_ID_PREFIX, as
# hit_response has them.
_HIT_BEFORE_ID = (
    f"Content-Type: {wire.JSON_CONTENT_TYPE}\r\n{wire.REQUEST_ID_HEADER}: {wire.REQUEST_ID_PREFIX}"
).encode("latin-1")


def hit_lines(body: bytes, crc: str) -> tuple[bytes, bytes, bytes]:
    """:func:`hit_response`'s header lines as bytes, for a
    :class:`~daxproxy.core.wire.ReadyAnswer` of the same answer: the ``Content-Length``
    line, the lines up to the request id's fresh part
    (:func:`~daxproxy.core.wire.new_request_id_tail`), the lines after it (the blank line
    that ends the head included)."""
    after = f"\r\n{wire.CRC32_HEADER}: {crc}\r\n{CACHE_HEADER}: {HIT}\r\n\r\n"
    return b"Content-Length: %d\r\n" % len(body), _HIT_BEFORE_ID, after.encode("latin-1")


def upstream_failed(answer: UpstreamResponse) -> bool:
    """An answer that may be replaced by a stale entry: a 5xx, never a client error."""
    return answer.status >= 500


def stale(response: WireResponse, expired_for: float) -> WireResponse:
    """A built answer relabelled as served stale, ``expired_for`` seconds past its TTL."""
    headers = [h for h in response.headers if h[0] != CACHE_HEADER]
    headers.append((STALE_HEADER, str(int(expired_for * 1000))))
    headers.append((CACHE_HEADER, STALE))
    response.headers = headers
    return response
