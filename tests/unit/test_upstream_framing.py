"""The upstream client's HTTP framing, against raw loopback servers that answer byte for byte.

The client writes its request heads itself and reads answers with aiohttp's parser
(daxproxy/service/exchange.py), so what ``ClientSession`` used to guarantee is pinned here:
every way an answer can be framed is read whole, a connection is reused only when the
server keeps it and the whole request went out, an answer that is not HTTP is a 500, and
a header cannot smuggle a line into the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from botocore.credentials import ReadOnlyCredentials

from daxproxy.core.config import Endpoints
from daxproxy.core.errors import InternalServerError, ServiceUnavailable
from daxproxy.core.wire import Headers, RawHeaders, Target
from daxproxy.service.signing import Signer, StaticCredentials
from daxproxy.service.upstream import HttpUpstream

GET_ITEM = Target("DynamoDB_20120810", "GetItem")
BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """Each connection's requests (head and body) are recorded; ``answer(n, head)`` gives
    the bytes for the n-th request overall (None: close the connection unanswered)."""

    def __init__(self, answer: Callable[[int, bytes], bytes | None]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection, head, body)
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                answer = self.answer(len(self.requests), head)
                self.requests.append((connection, head, b""))
                if answer is None:
                    break
                if not answer.startswith(b"EARLY"):
                    body = await reader.readexactly(length)
                    self.requests[-1] = (connection, head, body)
                else:  # answered before the body is read; the body is never read
                    answer = answer[len(b"EARLY") :]
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower() or answer.startswith(b"HTTP/1.0"):
                    break
                if self.requests[-1][2] == b"" and length:  # drop what else comes
                    while await reader.read(1024 * 1024):
                        pass
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def serve() -> AsyncIterator[
    Callable[[Callable[[int, bytes], bytes | None]], Awaitable[Server]]
]:
    servers: list[Server] = []

    async def start(answer: Callable[[int, bytes], bytes | None]) -> Server:
        server = Server(answer)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def upstream_of(server: Server) -> HttpUpstream:
    return HttpUpstream(
        Endpoints(server.url, server.url),
        Signer(StaticCredentials(ReadOnlyCredentials("AKID", "secret", None)), "eu-west-1"),
        connect_timeout=0.5,
        request_timeout=2.0,
        max_connections=8,
    )


async def exchange(server: Server, count: int, headers: Headers = ()) -> list[tuple[int, bytes]]:
    upstream = upstream_of(server)
    try:
        answers = []
        for _ in range(count):
            answer = await upstream.send(GET_ITEM, BODY, headers, retry_safe=False)
            answers.append((answer.status, answer.body))
        return answers
    finally:
        await upstream.close()


async def test_a_keep_alive_connection_carries_the_next_request(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: OK)
    assert await exchange(server, 3) == [(200, b"{}")] * 3
    assert server.connections == 1
    assert [body for _, _, body in server.requests] == [BODY] * 3


@pytest.mark.parametrize("raw", [False, True], ids=["decoded", "raw"])
async def test_the_request_head_is_signed_and_framed(serve, raw: bool) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: OK)
    client = [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("Content-Length", "999"),  # the proxy frames the body itself
        ("Accept-Encoding", "identity"),
        ("X-Custom", "caf\xe9"),
    ]
    headers = (
        RawHeaders([(k.encode("latin-1"), v.encode("latin-1")) for k, v in client])
        if raw
        else client
    )
    await exchange(server, 1, headers)
    head = server.requests[0][1]
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST / HTTP/1.1"
    names = [line.split(b":")[0] for line in lines[1:] if line]
    assert names == [
        b"Host",
        b"Content-Type",
        b"X-Amz-Target",
        b"X-Amz-Date",
        b"Authorization",
        b"Accept-Encoding",
        b"X-Custom",
        b"Content-Length",
    ]
    assert f"Host: 127.0.0.1:{server.url.rsplit(':', 1)[1]}".encode() in lines
    assert b"X-Custom: caf\xe9" in lines  # a client header's bytes as they came
    assert f"Content-Length: {len(BODY)}".encode() in lines


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n',
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}',
    ],
    ids=["chunked", "after-100-continue"],
)
async def test_every_framing_of_an_answer_is_read_whole(serve, answer: bytes) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: answer)
    assert await exchange(server, 2) == [(200, b'{"a":1}')] * 2
    assert server.connections == 1


async def test_an_answer_arriving_over_many_reads_is_read_whole(serve) -> None:  # type: ignore[no-untyped-def]
    body = b'{"Item":{"b":{"S":"' + b"x" * (4 * 1024 * 1024) + b'"}}}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server = await serve(lambda n, head: answer)
    assert await exchange(server, 2) == [(200, body)] * 2
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}",  # no length: read to the end
    ],
    ids=["connection-close", "http-1.0", "until-eof"],
)
async def test_a_connection_the_server_closes_is_not_reused(serve, answer: bytes) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: answer)
    assert await exchange(server, 2) == [(200, b"{}")] * 2
    assert server.connections == 2


async def test_a_connection_answered_before_the_whole_body_went_out_is_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    # The body is far larger than the sockets' buffers: most of it is still the
    # client's to send when the answer arrives.
    server = await serve(lambda n, head: b"EARLY" + OK if n == 0 else OK)
    upstream = upstream_of(server)
    big = b'{"TableName":"t","Item":{"b":{"S":"' + b"x" * (48 * 1024 * 1024) + b'"}}}'
    try:
        first = await upstream.send(GET_ITEM, big, [], retry_safe=False)
        second = await upstream.send(GET_ITEM, BODY, [], retry_safe=False)
    finally:
        await upstream.close()
    assert (first.status, second.status, second.body) == (200, 200, b"{}")
    assert server.connections == 2 and server.requests[1][2] == BODY


@pytest.mark.parametrize("retry_safe", [True, False])
async def test_an_answer_that_is_not_http_is_an_internal_server_error(serve, retry_safe) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: b"SMTP ready\r\n\r\n")
    upstream = upstream_of(server)
    try:
        with pytest.raises(InternalServerError, match="connection to the upstream"):
            await upstream.send(GET_ITEM, BODY, [], retry_safe=retry_safe)
    finally:
        await upstream.close()
    assert len(server.requests) == 1  # never resent: it was answered


async def test_a_truncated_body_is_an_internal_server_error(serve) -> None:  # type: ignore[no-untyped-def]
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}"
    server = await serve(lambda n, head: short)  # then the connection closes
    upstream = upstream_of(server)
    try:
        with pytest.raises(InternalServerError, match="connection to the upstream"):
            await upstream.send(GET_ITEM, BODY, [], retry_safe=False)
    finally:
        await upstream.close()


@pytest.mark.parametrize("raw", [False, True], ids=["decoded", "raw"])
@pytest.mark.parametrize("name", ["X-Custom", "Content-Type"])  # the one a signature covers
@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
async def test_a_header_cannot_add_a_line_to_the_request(
    serve, name: str, value: str, raw: bool
) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: OK)
    upstream = upstream_of(server)
    headers: Headers = [(name, value)]
    if raw:
        headers = RawHeaders([(name.encode(), value.encode())])
    try:
        with pytest.raises(ValueError, match="CR or LF"):
            await upstream.send(GET_ITEM, BODY, headers, retry_safe=False)
    finally:
        await upstream.close()
    assert server.requests == []


async def test_a_connection_not_made_within_the_connect_timeout_is_service_unavailable(
    serve, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    server = await serve(lambda n, head: OK)
    upstream = upstream_of(server)

    async def slow_connect(*args: object, **kwargs: object) -> None:
        raise TimeoutError  # what aiohttp's connector raises past sock_connect

    connector = upstream._session.connector
    assert connector is not None
    monkeypatch.setattr(connector, "connect", slow_connect)
    try:
        with pytest.raises(ServiceUnavailable, match="could not be reached"):
            await upstream.send(GET_ITEM, BODY, [], retry_safe=True)
    finally:
        await upstream.close()
