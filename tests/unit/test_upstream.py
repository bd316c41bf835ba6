"""The upstream client against fake upstream servers on loopback.

Proves what the rest of the proxy relies on: each request arrives signed for the host the
upstream sees (checked by recomputing the signature with botocore from what arrived), the
body and answer cross unchanged (a gzip answer stays gzip), and every way an upstream can
fail becomes the right DynamoDB error within the timeout; only read-only requests are resent.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from daxproxy.core.config import Endpoints
from daxproxy.core.errors import InternalServerError, ServiceUnavailable
from daxproxy.core.wire import Target
from daxproxy.service.embedded import free_port
from daxproxy.service.signing import Signer, StaticCredentials
from daxproxy.service.upstream import HttpUpstream

CREDENTIALS = ReadOnlyCredentials(
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token"
)
GET_ITEM = Target("DynamoDB_20120810", "GetItem")
PUT_ITEM = Target("DynamoDB_20120810", "PutItem")
BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'
CLIENT_HEADERS = [
    ("Content-Type", "application/x-amz-json-1.0"),
    ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
    ("Accept-Encoding", "identity"),
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def signature_is_valid(request: web.Request, body: bytes) -> bool:
    """Recompute the SigV4 signature from what arrived, as DynamoDB would."""
    authorization = request.headers["Authorization"]
    fields = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
    signed_names = fields["SignedHeaders"].split(";")
    _, date, region, service, _ = fields["Credential"].split("/")
    received = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['Host']}{request.path}",
        data=body,
        headers={name: request.headers[name] for name in signed_names},
    )
    received.context["timestamp"] = request.headers["X-Amz-Date"]
    auth = SigV4Auth(CREDENTIALS, service, region)
    canonical = auth.canonical_request(received)
    expected = auth.signature(auth.string_to_sign(received, canonical), received)
    return bool(
        expected == fields["Signature"]
        and {"host", "x-amz-date", "x-amz-target"} <= set(signed_names)
        and date == request.headers["X-Amz-Date"][:8]
        and service == "dynamodb"
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    for server in servers:
        await server.close()


def make_upstream(
    url: str, *, request_timeout: float = 2.0, region: str = "eu-west-1"
) -> HttpUpstream:
    return HttpUpstream(
        Endpoints(url, url),
        Signer(StaticCredentials(CREDENTIALS), region),
        connect_timeout=0.5,
        request_timeout=request_timeout,
        max_connections=8,
    )


async def test_requests_arrive_signed_for_the_upstream_host_with_the_body_unchanged(serve) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[bool, bytes, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            (
                signature_is_valid(request, body),
                body,
                request.headers["X-Amz-Security-Token"],
                request.headers["Authorization"].split("Credential=")[1].split("/")[2],
            )
        )
        return web.Response(
            body=b'{"Item":{}}', headers={"x-amzn-RequestId": "R1", "x-amz-crc32": "1"}
        )

    upstream = make_upstream(await serve(handler))
    try:
        answer = await upstream.send(GET_ITEM, BODY, CLIENT_HEADERS, retry_safe=True)
        big = b'{"TableName":"t","Item":{"b":{"S":"' + b"x" * 600_000 + b'"}}}'
        await upstream.send(PUT_ITEM, big, CLIENT_HEADERS, retry_safe=False)  # signed in a thread
    finally:
        await upstream.close()
    assert seen[0] == (True, BODY, "session-token", "eu-west-1")
    assert seen[1][:2] == (True, big)
    assert answer.status == 200 and answer.body == b'{"Item":{}}'
    headers = dict(answer.headers)
    assert headers["x-amzn-RequestId"] == "R1" and headers["x-amz-crc32"] == "1"


async def test_streams_requests_go_to_the_streams_endpoint(serve) -> None:  # type: ignore[no-untyped-def]
    hits: list[str] = []

    def recorder(name: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            hits.append(name)
            return web.Response(body=b"{}")

        return handler

    dynamodb, streams = await serve(recorder("dynamodb")), await serve(recorder("streams"))
    upstream = HttpUpstream(
        Endpoints(dynamodb, streams),
        Signer(StaticCredentials(CREDENTIALS), "us-east-1"),
        connect_timeout=0.5,
        request_timeout=2,
        max_connections=8,
    )
    try:
        await upstream.send(
            Target("DynamoDBStreams_20120810", "ListStreams"), b"{}", [], retry_safe=True
        )
        await upstream.send(Target("DynamoDB_20120810", "ListTables"), b"{}", [], retry_safe=True)
    finally:
        await upstream.close()
    assert hits == ["streams", "dynamodb"]


async def test_a_compressed_answer_is_relayed_compressed(serve) -> None:  # type: ignore[no-untyped-def]
    compressed = gzip.compress(b'{"TableNames":[]}')

    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Accept-Encoding"] == "gzip"
        return web.Response(body=compressed, headers={"Content-Encoding": "gzip"})

    upstream = make_upstream(await serve(handler))
    try:
        answer = await upstream.send(GET_ITEM, BODY, [("Accept-Encoding", "gzip")], retry_safe=True)
    finally:
        await upstream.close()
    assert answer.body == compressed
    assert dict(answer.headers)["Content-Encoding"] == "gzip"


async def test_a_refused_connection_is_service_unavailable() -> None:
    upstream = make_upstream(f"http://127.0.0.1:{free_port()}/")
    try:
        with pytest.raises(ServiceUnavailable):
            await upstream.send(GET_ITEM, BODY, CLIENT_HEADERS, retry_safe=True)
        assert await upstream.ping() is False
    finally:
        await upstream.close()


async def test_a_stalled_upstream_is_an_internal_server_error_within_the_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=b"{}")

    upstream = make_upstream(await serve(handler), request_timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(InternalServerError, match=r"did not answer within 0\.3 s"):
            await upstream.send(GET_ITEM, BODY, CLIENT_HEADERS, retry_safe=True)
    finally:
        release.set()
        await upstream.close()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(("retry_safe", "calls"), [(True, 2), (False, 1)])
async def test_a_dropped_connection_is_resent_only_when_safe(
    serve, retry_safe: bool, calls: int
) -> None:  # type: ignore[no-untyped-def]
    count = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        assert request.transport is not None
        request.transport.close()  # the connection dies before any answer
        return web.Response(body=b"{}")

    upstream = make_upstream(await serve(handler))
    try:
        with pytest.raises(InternalServerError, match="connection"):
            await upstream.send(GET_ITEM, BODY, CLIENT_HEADERS, retry_safe=retry_safe)
    finally:
        await upstream.close()
    assert count == calls


@pytest.mark.parametrize(
    ("status", "ready"), [(200, True), (400, True), (500, False), (503, False)]
)
async def test_ping(serve, status: int, ready: bool) -> None:  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["X-Amz-Target"] == "DynamoDB_20120810.ListTables"
        assert signature_is_valid(request, await request.read())
        return web.Response(status=status, body=b"{}")

    upstream = make_upstream(await serve(handler))
    try:
        assert await upstream.ping() is ready
    finally:
        await upstream.close()
