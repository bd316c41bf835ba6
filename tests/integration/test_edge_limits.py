"""The client edge's bounds and TLS, on a real proxy process, with raw sockets.

One proxy with small bounds (header size, read and idle timeouts, a cap of a few
connections) in front of the suite's moto server: an over-long header, a broken body, a
client that stalls half-way through its headers or its body, an idle keep-alive connection
and a connection past the cap each get what config/README.md (Limits) says, and the
connections within the bounds keep working. Then a proxy serving HTTPS with a throwaway
certificate authority: boto3 round-trips through it, plain HTTP to its port fails cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import Iterator

import boto3
import orjson
import pytest
import trustme

from tests.integration.conftest import Endpoints
from tests.integration.harness import (
    EDGE_LOOPS,
    NO_RETRIES,
    REGION,
    ProxyProcess,
    get,
)
from tests.integration.raw_http import dynamodb_request, millis, proxy_on_loop

# Seconds. A test waits for what these bound (an answer, a close) and asserts only a lower
# bound on how long that took, which load cannot break; what a test must do within one of
# them (send a slow request, stay idle) takes a fifth or a quarter of it.
READ_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0  # over READ_TIMEOUT: a slow client waits out a read deadline while idle
CAP = 4
MAX_HEADER = 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module", params=EDGE_LOOPS)
def bounded(endpoints: Endpoints, request: pytest.FixtureRequest) -> Iterator[ProxyProcess]:
    with proxy_on_loop(
        endpoints.upstream,
        request.param,
        "--client-read-timeout-millis",
        millis(READ_TIMEOUT),
        "--client-idle-timeout-millis",
        millis(IDLE_TIMEOUT),
        "--max-client-connections",
        str(CAP),
        "--max-header-bytes",
        str(MAX_HEADER),
    ) as proxy:
        yield proxy


async def connect(proxy: ProxyProcess, tls: ssl.SSLContext | None = None) -> Stream:
    return await asyncio.open_connection("127.0.0.1", proxy.port, ssl=tls)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close our end and wait until the socket is closed: a transport merely asked to close
    is closed on a later turn of the loop, which a test's loop may not get."""
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


def metric(proxy: ProxyProcess, name: str) -> float | None:
    """A series of the proxy's /metrics, read over a connection of its own (which counts in
    ``daxproxy_client_connections``); None when the proxy cannot be reached (past the cap)."""
    try:
        status, body = get(proxy.url + "/metrics")
    except OSError:
        return None
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def connections_settle(proxy: ProxyProcess) -> None:
    """Wait until the proxy holds no client connection but the scraper's own: what earlier
    tests closed has been closed on its side too."""
    deadline = time.monotonic() + 10
    while metric(proxy, "daxproxy_client_connections") != 1:
        assert time.monotonic() < deadline, "the proxy kept connections that were closed"
        await asyncio.sleep(0.02)


async def read_all(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until the proxy closes the connection (a reset counts as closing)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    return b"".join(chunks)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer with a Content-Length, leaving the connection open."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        return parse_head(head, await reader.readexactly(content_length(head)))


def content_length(head: bytes) -> int:
    return int(parse_head(head, b"")[1]["content-length"])


def parse_head(head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return parse_head(head, body)


def dynamodb_error(answer: bytes, status: int, code: str) -> str:
    """The message of a DynamoDB-shaped error answer with this status and code."""
    got_status, headers, body = parse(answer)
    assert got_status == status, answer
    assert headers["content-type"] == "application/x-amz-json-1.0"
    error = orjson.loads(body)
    assert error["__type"].rpartition("#")[2] == code
    assert isinstance(error["message"], str)
    return str(error["message"])


def list_tables(extra_headers: bytes = b"") -> bytes:
    return dynamodb_request("ListTables", b"{}", extra_headers)


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n"


async def test_an_over_long_header_field_is_a_dynamodb_error(bounded: ProxyProcess) -> None:
    reader, writer = await connect(bounded)
    writer.write(list_tables(b"X-Long: " + b"a" * (MAX_HEADER + 1) + b"\r\n"))
    message = dynamodb_error(await read_all(reader), 400, "SerializationException")
    assert f"{MAX_HEADER} bytes" in message
    await close(writer)


async def test_an_over_long_request_line_is_a_dynamodb_error(bounded: ProxyProcess) -> None:
    reader, writer = await connect(bounded)
    writer.write(b"POST /" + b"p" * MAX_HEADER + b" HTTP/1.1\r\nHost: proxy\r\n\r\n")
    dynamodb_error(await read_all(reader), 400, "SerializationException")
    await close(writer)


async def test_a_header_within_the_limit_is_served(bounded: ProxyProcess) -> None:
    reader, writer = await connect(bounded)
    writer.write(list_tables(b"X-Long: " + b"a" * (MAX_HEADER - 100) + b"\r\n"))
    status, _, body = await read_answer(reader)
    assert status == 200, body
    await close(writer)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: proxy\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: proxy\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    ],
    ids=["garbage", "header-without-colon", "two-content-lengths"],
)
async def test_a_malformed_request_is_a_dynamodb_error(
    bounded: ProxyProcess, request_bytes: bytes
) -> None:
    reader, writer = await connect(bounded)
    writer.write(request_bytes)
    dynamodb_error(await read_all(reader), 400, "SerializationException")
    await close(writer)


async def test_a_broken_chunked_body_is_a_dynamodb_error(bounded: ProxyProcess) -> None:
    reader, writer = await connect(bounded)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: proxy\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZ\r\n\r\n"
    )
    dynamodb_error(await read_all(reader), 400, "SerializationException")
    await close(writer)


async def test_a_client_stalling_in_its_headers_gets_408_and_is_closed(
    bounded: ProxyProcess,
) -> None:
    reader, writer = await connect(bounded)
    began = time.monotonic()
    writer.write(b"POST / HTTP/1.1\r\nHost: proxy\r\nX-Amz-Target: DynamoDB_2012")
    answer = await read_all(reader)
    took = time.monotonic() - began
    message = dynamodb_error(answer, 408, "RequestTimeoutException")
    assert "client_read_timeout_millis" in message
    assert parse(answer)[1]["connection"] == "close"
    assert took >= READ_TIMEOUT * 0.9
    await close(writer)


async def test_a_client_stalling_in_its_body_gets_408_and_is_closed(
    bounded: ProxyProcess,
) -> None:
    reader, writer = await connect(bounded)
    began = time.monotonic()
    writer.write(list_tables().replace(b"Content-Length: 2", b"Content-Length: 20"))
    answer = await read_all(reader)
    took = time.monotonic() - began
    dynamodb_error(answer, 408, "RequestTimeoutException")
    assert took >= READ_TIMEOUT * 0.9
    await close(writer)


async def send_slowly(writer: asyncio.StreamWriter, request: bytes) -> float:
    """The request in three pieces, a tenth of the read timeout apart: a fifth of it in
    all, leaving four fifths for a loaded machine to be late. When the first was sent."""
    first, *rest = (request[:20], request[20:-1], request[-1:])
    writer.write(first)
    began = time.monotonic()
    for piece in rest:
        await asyncio.sleep(READ_TIMEOUT / 10)
        writer.write(piece)
    return began


async def test_a_slow_client_within_the_read_timeout_is_served(bounded: ProxyProcess) -> None:
    reader, writer = await connect(bounded)
    began = await send_slowly(writer, list_tables())
    status, _, body = await read_answer(reader)
    assert status == 200, body
    # The clock starts again with each request: a second one, begun past the first's
    # deadline (a wait that can only run long, never short), on the same connection, is
    # served too.
    await asyncio.sleep(began + READ_TIMEOUT + 0.05 - time.monotonic())
    assert time.monotonic() - began > READ_TIMEOUT
    await send_slowly(writer, list_tables())
    status, _, body = await read_answer(reader)
    assert status == 200, body
    await close(writer)


async def test_an_idle_keep_alive_connection_is_closed(bounded: ProxyProcess) -> None:
    reader, writer = await connect(bounded)
    writer.write(HEALTH)
    assert (await read_answer(reader))[0] == 200
    await asyncio.sleep(IDLE_TIMEOUT / 4)  # idle, but for a quarter of the timeout only
    began = time.monotonic()
    writer.write(HEALTH)
    assert (await read_answer(reader))[0] == 200
    # Closed, with no answer, and not before the timeout: the proxy's idle timer starts
    # after it answered, so after `began`, and the bound holds however slow the machine.
    assert await read_all(reader, timeout=IDLE_TIMEOUT + 10) == b""
    assert time.monotonic() - began >= IDLE_TIMEOUT * 0.9
    await close(writer)


async def test_a_connection_that_sends_nothing_is_closed(bounded: ProxyProcess) -> None:
    began = time.monotonic()
    reader, writer = await connect(bounded)
    assert await read_all(reader, timeout=IDLE_TIMEOUT + 10) == b""
    assert time.monotonic() - began >= IDLE_TIMEOUT * 0.9
    await close(writer)


async def test_connections_past_the_cap_are_closed_at_once(bounded: ProxyProcess) -> None:
    await connections_settle(bounded)  # earlier tests' connections are gone
    held = [await connect(bounded) for _ in range(CAP)]
    for reader, writer in held:  # each is served, and stays open
        writer.write(HEALTH)
        assert (await read_answer(reader))[0] == 200
    reader, writer = await connect(bounded)
    writer.write(HEALTH)
    # Closed at once: well before the idle timer could have closed it.
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        assert await read_all(reader, timeout=IDLE_TIMEOUT / 2) == b""
    await close(writer)
    for reader, writer in held:  # those under the cap still work
        writer.write(HEALTH)
        assert (await read_answer(reader))[0] == 200
    reader, writer = held[0]
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: proxy\r\n\r\n")
    _, _, metrics = await read_answer(reader)
    assert b"\ndaxproxy_client_connections_refused_total 1.0\n" in metrics
    for _, writer in held:
        await close(writer)
    await connections_settle(bounded)  # closed connections free their places
    reader, writer = await connect(bounded)
    writer.write(HEALTH)
    assert (await read_answer(reader))[0] == 200
    await close(writer)


# TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA, and a certificate and key it issued for 127.0.0.1 and localhost."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
        "other_key": directory / "other-key.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    issued.private_key_pem.write_to_path(str(files["key"]))
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(files["other_key"]))
    return {name: str(path) for name, path in files.items()}


@pytest.fixture(scope="module", params=EDGE_LOOPS)
def https_proxy(
    endpoints: Endpoints, certificates: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[ProxyProcess]:
    with proxy_on_loop(
        endpoints.upstream,
        request.param,
        "--tls-cert-file",
        certificates["cert"],
        "--tls-key-file",
        certificates["key"],
        ca_file=certificates["ca"],
    ) as proxy:
        yield proxy


def test_boto3_round_trips_through_https(
    https_proxy: ProxyProcess, certificates: dict[str, str]
) -> None:
    assert https_proxy.url.startswith("https://")
    client = boto3.client(
        "dynamodb",
        endpoint_url=https_proxy.url,
        region_name=REGION,
        config=NO_RETRIES,
        verify=certificates["ca"],
    )
    table = f"tls-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"id": {"S": "42"}, "name": {"S": "Ada"}}
    client.put_item(TableName=table, Item=item)
    assert client.get_item(TableName=table, Key={"id": {"S": "42"}})["Item"] == item
    answer = client.get_item(TableName=table, Key={"id": {"S": "42"}})  # the cache's, over TLS
    assert answer["Item"] == item
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"] == "hit"


async def test_plain_http_to_the_https_port_fails_cleanly(
    https_proxy: ProxyProcess, certificates: dict[str, str]
) -> None:
    reader, writer = await connect(https_proxy)
    writer.write(HEALTH)
    answer = await read_all(reader)
    assert not answer.startswith(b"HTTP/")  # a TLS alert at most, then closed
    await close(writer)
    # and the proxy still serves HTTPS
    reader, writer = await connect(
        https_proxy, ssl.create_default_context(cafile=certificates["ca"])
    )
    writer.write(HEALTH)
    assert (await read_answer(reader))[0] == 200
    await close(writer)


async def test_a_client_not_trusting_the_certificate_is_refused(
    https_proxy: ProxyProcess,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(https_proxy, ssl.create_default_context())
