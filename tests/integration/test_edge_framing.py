"""Fuzzing the edge's framing on a real proxy process, on each event loop it runs on.

The requests are well known (GetItem of items whose answers name them, misses that go
upstream, health checks, 404s, 405s, bodies that are not JSON, malformed HTTP); what is
fuzzed is how their bytes reach the proxy and in what company:

- a request split at every byte boundary, alone and pipelined behind another;
- hypothesis' pipelines mixing good and bad requests, sent in random pieces: every request
  before the first malformed one is answered, in order, with its own answer; the malformed
  one gets a 400 ``SerializationException`` and the connection closes; nothing after it
  is answered;
- a client that closes mid-head or mid-body, and slow-loris clients that send their head a
  byte at a time (within the read timeout: served; past it: 408), while other clients are
  served at once.

After each, the proxy is still up and serves; its log never has a traceback.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.edge_wire import Answer, answers_in
from tests.integration.conftest import Endpoints
from tests.integration.harness import EDGE_LOOPS, PK_SK_TABLE, REGION, ProxyProcess
from tests.integration.raw_http import dynamodb_request, millis, proxy_on_loop

READ_TIMEOUT = 1.0
TABLE = f"framing-{uuid.uuid4().hex[:8]}"
ITEMS = 8


@pytest.fixture(scope="module", params=EDGE_LOOPS)
def proxy(endpoints: Endpoints, request: pytest.FixtureRequest) -> Iterator[ProxyProcess]:
    moto = boto3.client("dynamodb", endpoint_url=endpoints.upstream, region_name=REGION)
    with contextlib.suppress(moto.exceptions.ResourceInUseException):
        moto.create_table(TableName=TABLE, **PK_SK_TABLE)
        for i in range(ITEMS):
            moto.put_item(
                TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": "1"}, "v": {"N": str(i)}}
            )
    with proxy_on_loop(
        endpoints.upstream,
        request.param,
        "--client-read-timeout-millis",
        millis(READ_TIMEOUT),
    ) as process:
        yield process


@dataclass(frozen=True)
class Request:
    """A request's bytes, and what its answer must be: status, and a check of the body."""

    raw: bytes
    status: int
    value: int | None = None  # a GetItem's item's "v"
    error: str | None = None  # a DynamoDB error code
    closes: bool = False  # malformed: answered, then the connection closes

    def check(self, answer: Answer) -> None:
        assert answer.status == self.status, (self.raw[:80], answer)
        if self.value is not None:
            assert orjson.loads(answer.body)["Item"]["v"] == {"N": str(self.value)}
        if self.error is not None:
            assert answer.error == self.error, answer


def get_item(i: int, consistent: bool = False) -> Request:
    key = {"pk": {"S": f"k{i}"}, "sk": {"N": "1"}}
    payload = {"TableName": TABLE, "Key": key, "ConsistentRead": consistent}
    return Request(dynamodb_request("GetItem", payload), 200, value=i)


def chunked_get_item(i: int) -> Request:
    body = orjson.dumps({"TableName": TABLE, "Key": {"pk": {"S": f"k{i}"}, "sk": {"N": "1"}}})
    head = (
        b"POST / HTTP/1.1\r\nHost: p\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:]))
    return Request(head + chunks + b"0\r\n\r\n", 200, value=i)


GOOD: list[Request] = [
    *(get_item(i) for i in range(ITEMS)),
    *(get_item(i, consistent=True) for i in range(ITEMS)),  # upstream: answered by a task
    *(chunked_get_item(i) for i in range(3)),
    Request(b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n", 200),
    Request(b"GET /nowhere HTTP/1.1\r\nHost: p\r\n\r\n", 404, error="UnknownOperationException"),
    Request(
        b"PUT / HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n\r\n{}",
        405,
        error="MethodNotAllowedException",
    ),
    Request(dynamodb_request("GetItem", b"{not json"), 400, error="SerializationException"),
    Request(
        b"POST / HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n\r\n{}",  # no X-Amz-Target
        400,
        error="UnknownOperationException",
    ),
]
MALFORMED: list[Request] = [
    Request(raw, 400, error="SerializationException", closes=True)
    for raw in (
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: p\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        b"POST /\x00 HTTP/1.1\r\n\r\n",
    )
]


def exchange(port: int, pieces: list[bytes], expected: int, pause: float = 0.0) -> list[Answer]:
    """Send ``pieces`` one by one (``pause`` s apart), then read until ``expected`` answers
    came or the proxy closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in pieces:
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
        return read_answers(sock, expected)


def read_answers(sock: socket.socket, expected: int) -> list[Answer]:
    raw = b""
    got: list[Answer] = []
    with contextlib.suppress(ConnectionResetError):
        while len(got) < expected:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
            got, _ = answers_in(raw)
    return got


def still_serving(proxy: ProxyProcess) -> None:
    assert proxy.process is not None and proxy.process.poll() is None, proxy.log()
    [answer] = exchange(proxy.port, [get_item(0).raw], 1)
    get_item(0).check(answer)


def test_a_request_split_at_every_byte_boundary_is_answered(proxy: ProxyProcess) -> None:
    first, second = get_item(1), get_item(2, consistent=True)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for cut in range(1, len(first.raw)):  # alone, on one keep-alive connection
            sock.sendall(first.raw[:cut])
            time.sleep(0.0005)
            sock.sendall(first.raw[cut:])
            [answer] = read_answers(sock, 1)
            first.check(answer)
    pair = first.raw + second.raw  # and pipelined, the cut anywhere in either
    for cut in range(1, len(pair), 7):
        got = exchange(proxy.port, [pair[:cut], pair[cut:]], 2, pause=0.0005)
        assert len(got) == 2, cut
        first.check(got[0])
        second.check(got[1])
    still_serving(proxy)


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[list[Request], list[bytes]]:
    requests = draw(st.lists(st.sampled_from(GOOD), min_size=1, max_size=8))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(requests)))
        requests.insert(at, draw(st.sampled_from(MALFORMED)))
        if draw(st.booleans()):
            requests.append(draw(st.sampled_from(GOOD)))  # after it: never answered
    stream = b"".join(r.raw for r in requests)
    cuts = sorted(draw(st.sets(st.integers(1, len(stream) - 1), max_size=6)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return requests, pieces


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(pipeline=pipelines())
def test_pipelines_of_good_and_bad_requests_are_answered_in_order(
    proxy: ProxyProcess, pipeline: tuple[list[Request], list[bytes]]
) -> None:
    requests, pieces = pipeline
    bad = next((i for i, r in enumerate(requests) if r.closes), None)
    owed = requests if bad is None else requests[: bad + 1]
    got = exchange(proxy.port, pieces, len(requests), pause=0.001)
    assert len(got) == len(owed), (len(got), [r.raw[:40] for r in requests])
    for request, answer in zip(owed, got, strict=True):
        request.check(answer)
    if bad is not None:
        assert got[-1].headers.get("connection") == "close"
    still_serving(proxy)


def test_clients_that_close_mid_request_break_nothing(proxy: ProxyProcess) -> None:
    raw = get_item(3, consistent=True).raw
    for cut in (5, raw.index(b"\r\n\r\n"), len(raw) - 3):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(raw[:cut])
    # And one that leaves while its request is being answered upstream.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(raw + raw)
    still_serving(proxy)


def test_slow_loris_heads_are_served_or_timed_out_and_others_are_served_meanwhile(
    proxy: ProxyProcess,
) -> None:
    request = get_item(4)
    rng = random.Random(4)
    slow = []
    for _ in range(4):  # four connections that trickle their heads
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        slow.append(sock)
    try:
        began = time.monotonic()
        sent = 0
        while sent < 40 and time.monotonic() - began < READ_TIMEOUT / 2:
            for sock in slow:
                sock.sendall(request.raw[sent : sent + 1])
            sent += 1
            [answer] = exchange(proxy.port, [get_item(rng.randrange(ITEMS)).raw], 1)
            assert answer.status == 200  # the others are served meanwhile
        within, *late = slow
        within.sendall(request.raw[sent:])
        [answer] = read_answers(within, 1)
        request.check(answer)
        for sock in late:  # never finished: 408 once the read timeout ran out, then closed
            [answer] = read_answers(sock, 2)
            assert (answer.status, answer.error) == (408, "RequestTimeoutException")
            assert time.monotonic() - began >= READ_TIMEOUT * 0.9
    finally:
        for sock in slow:
            sock.close()
    still_serving(proxy)


def test_expect_100_continue_over_the_wire(proxy: ProxyProcess) -> None:
    request = get_item(5)
    head, _, body = request.raw.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        [answer] = read_answers(sock, 1)
        request.check(answer)
