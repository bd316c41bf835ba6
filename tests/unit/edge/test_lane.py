"""The quick lane (daxproxy/edge/lane.py): a whole GetItem request in one read, parsed with
no Python call per field and offered to the ready-hit path.

Pinned here: whatever comes, a connection answers exactly what it answers without the lane
(a hypothesis fuzz of requests, their fields' spellings and repeats, and where the reads
cut them); the lane reads the common hit, and each of its checks sends a request it must
not read to the reader, with a test that fails without that check.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daxproxy.edge.lane import Lane
from daxproxy.edge.limits import MAX_HEADER_FIELDS
from daxproxy.service.proxy import Proxy
from tests.edge_wire import Wire, make_edge, post
from tests.unit.edge.test_ready_hit import BODY, GET_ITEM, make_proxy

PUT_ITEM = "DynamoDB_20120810.PutItem"


pytestmark = pytest.mark.usefixtures("frozen_date")  # conftest.py


class Reads:
    """What a connection's lane gave for each read offered to it."""

    def __init__(self, connection: Wire) -> None:
        self.given: list[Any] = []
        reader = connection.protocol._reader
        assert reader._lane is not None
        self._lane = reader._lane
        reader._lane = self  # type: ignore[assignment]

    def read(self, data: bytes) -> Any:
        self.given.append(self._lane.read(data))
        return self.given[-1]


def without_lane(connection: Wire) -> Wire:
    connection.protocol._reader._lane = None
    return connection


async def warmed(p: Proxy, **limits: Any) -> Wire:
    """A connection over which the item was read twice (a miss, then a hit, on a new
    proxy): its body is remembered, ready to be answered quick."""
    connection = Wire(make_edge(p, **limits))
    for _ in range(2):
        connection.send(post(BODY))
        await connection.settle()
    assert [a.headers["x-daxproxy-cache"] for a in connection.answers()][-1] == "hit"
    connection.transport.written.clear()
    return connection


def seen(connection: Wire) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """The connection's answers, their request ids aside, and whether it is closing."""
    out = []
    for answer in connection.answers():
        headers = {k: v for k, v in answer.headers.items() if k != "x-amzn-requestid"}
        out.append((answer.status, headers, answer.body))
    return out, connection.transport.closing


async def test_the_lane_reads_a_whole_hit_and_its_answer_is_the_readers() -> None:
    lane_side, reader_side = await warmed(make_proxy()), without_lane(await warmed(make_proxy()))
    reads = Reads(lane_side)
    for connection in (lane_side, reader_side):
        connection.send(post(BODY, extra=b"Connection: keep-alive\r\nUser-Agent: x\r\n"))
    assert reads.given == [(GET_ITEM.encode(), BODY)]
    assert seen(lane_side) == seen(reader_side)
    [(status, headers, body)], closing = seen(lane_side)
    assert (status, headers["x-daxproxy-cache"], orjson.loads(body)["Item"]["v"]) == (
        200,
        "hit",
        {"S": "one"},
    )
    assert not closing


# What the lane must not read: each test fails without the check named. -------------------


async def test_a_read_that_continues_a_request_is_not_offered_to_the_lane() -> None:
    """The reader's ``not self.receiving``: a body whose second read begins as a request
    would is still that body."""
    connection = await warmed(make_proxy())
    reads = Reads(connection)
    inner = post(BODY)
    outer = post(b"x" * 10 + inner)
    connection.send(outer[: len(outer) - len(inner)])
    connection.send(inner)
    await connection.settle()
    [answer] = connection.answers()
    assert (answer.status, answer.error) == (400, "SerializationException")
    assert reads.given == [None]  # the first read alone: a request cut short


async def test_a_whole_request_and_part_of_the_next_are_both_read() -> None:
    """``marks``: one more request begun is not one whole request."""
    connection = await warmed(make_proxy())
    second = post(BODY)
    connection.send(post(BODY) + second[:20])
    connection.send(second[20:])
    assert [a.headers["x-daxproxy-cache"] for a in connection.answers()] == ["hit", "hit"]


async def test_after_a_request_cut_short_or_broken_the_lane_reads_the_next() -> None:
    """A new parser for the lane once one is left part-way."""
    p = make_proxy()
    connection = await warmed(p)
    reads = Reads(connection)
    whole = post(BODY)
    connection.send(whole[:30])
    connection.send(whole[30:])
    connection.send(whole)
    assert reads.given == [None, (GET_ITEM.encode(), BODY)]
    broken = await warmed(p)
    reads = Reads(broken)
    broken.send(b"POST / HTTP/1.1\r\nHost proxy\r\n\r\n")  # one connection, one request...
    assert reads.given == [None] and broken.transport.closing
    lane = broken.protocol._reader._lane
    assert lane is not None and lane.read(whole) == (GET_ITEM.encode(), BODY)


async def test_expect_100_continue_is_left_to_the_reader() -> None:
    """``_NAMES`` and ``_LOOKED_AT``: the reader sends its 100 Continue, even with the body
    in the same read."""
    lane_side, reader_side = await warmed(make_proxy()), without_lane(await warmed(make_proxy()))
    for connection in (lane_side, reader_side):
        connection.send(post(BODY, extra=b"Expect: 100-continue\r\n"))
    assert seen(lane_side) == seen(reader_side)
    assert bytes(lane_side.transport.written).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")


async def test_a_target_in_two_spellings_is_left_to_the_reader() -> None:
    """The last field wins, whatever its spelling: here a PutItem, not a hit."""
    connection = await warmed(make_proxy())
    reads = Reads(connection)
    head = f"POST / HTTP/1.1\r\nx-amz-target: {GET_ITEM}\r\nX-Amz-Target: {PUT_ITEM}\r\n"
    connection.send(head.encode() + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
    await connection.settle()
    [answer] = connection.answers()
    assert "x-daxproxy-cache" not in answer.headers and reads.given == [None]


async def test_a_connection_field_other_than_keep_alive_is_left_to_the_reader() -> None:
    """``_stays_open``: a hit with ``Connection: close`` says so and closes."""
    connection = await warmed(make_proxy())
    connection.send(post(BODY, extra=b"connection: Close\r\n"))
    [answer] = connection.answers()
    assert answer.headers["connection"] == "close" and connection.transport.closing


async def test_a_request_that_asks_for_an_upgrade_is_answered_as_the_reader_answers_it() -> None:
    """The lane's parser errors (here llhttp's upgrade) leave the request to the reader."""
    lane_side, reader_side = await warmed(make_proxy()), without_lane(await warmed(make_proxy()))
    for connection in (lane_side, reader_side):
        connection.send(post(BODY, extra=b"Connection: Upgrade\r\nUpgrade: h2c\r\n"))
        await connection.settle()
    assert seen(lane_side) == seen(reader_side)
    (answers_, closing) = seen(lane_side)  # llhttp stops at the head: no body was read
    assert [status for status, _, _ in answers_] == [400] and closing


async def test_while_the_edge_stops_a_hit_the_lane_reads_says_close_and_closes() -> None:
    connection = await warmed(make_proxy())
    reads = Reads(connection)
    connection.edge.stopping = True
    connection.send(post(BODY))
    [answer] = connection.answers()
    assert answer.headers["x-daxproxy-cache"] == "hit" and reads.given[0] is not None
    assert answer.headers["connection"] == "close" and connection.transport.closing


async def test_a_field_over_its_bound_is_refused_as_the_reader_refuses_it() -> None:
    """The head's length: no field of a head within the bound can be too long."""
    connection = await warmed(make_proxy(), max_header_bytes=1024)
    connection.send(post(BODY, extra=b"User-Agent: " + b"a" * 1100 + b"\r\n"))
    [answer] = connection.answers()
    assert (answer.status, answer.error) == (400, "SerializationException")


@pytest.mark.parametrize("fields", [MAX_HEADER_FIELDS, MAX_HEADER_FIELDS + 1])
async def test_too_many_fields_of_one_name_are_refused_as_the_reader_refuses_them(
    fields: int,
) -> None:
    """The count of a head's lines: one field the dict holds may be many on the wire.
    ``post`` sends 4 fields of its own."""
    connection = await warmed(make_proxy())
    reads = Reads(connection)
    connection.send(post(BODY, extra=b"Accept: x\r\n" * (fields - 4)))
    [answer] = connection.answers()
    if fields > MAX_HEADER_FIELDS:
        assert (answer.status, answer.error) == (400, "SerializationException")
        assert reads.given == [None]
    else:
        assert answer.headers["x-daxproxy-cache"] == "hit"
        assert reads.given == [(GET_ITEM.encode(), BODY)]


async def test_too_many_fields_in_a_short_head_are_refused_too() -> None:
    """Only a head of fewer bytes than 4 a field (each at least "a:" and CRLF) is not
    counted: this one of 129 fields has fewer than 1,000."""
    connection = await warmed(make_proxy())
    head = f"POST / HTTP/1.1\r\nX-Amz-Target: {GET_ITEM}\r\nContent-Length: {len(BODY)}\r\n"
    request = head.encode() + b"host:\r\n" * (MAX_HEADER_FIELDS - 1) + b"\r\n" + BODY
    assert len(request) - len(BODY) < 1000
    connection.send(request)
    [answer] = connection.answers()
    assert (answer.status, answer.error) == (400, "SerializationException")


@pytest.mark.parametrize("cache", [True, False])
async def test_only_a_proxy_that_answers_quick_has_a_quick_way_and_a_lane(cache: bool) -> None:
    """With the item cache off nothing is answered quick: no request pays for the lane."""
    p = make_proxy(item_cache_max_bytes=1 << 20 if cache else 0)
    assert p.answers_quick is cache
    connection = Wire(make_edge(p))
    assert (connection.edge.router.dynamodb.quick is None) is not cache
    assert (connection.protocol._reader._lane is None) is not cache


def test_the_lane_reads_one_whole_request_and_nothing_else() -> None:
    lane = Lane(max_field=8192)
    whole = post(BODY)
    assert lane.read(whole) == (GET_ITEM.encode(), BODY)
    assert lane.read(post(BODY, path="/admin/invalidate")) is None
    assert lane.read(whole.replace(b"HTTP/1.1", b"HTTP/1.0")) is None
    assert lane.read(post(BODY, extra=b"Amz-Sdk-Invocation-Id: 1\r\n")) == (
        GET_ITEM.encode(),
        BODY,
    )  # a field nobody looks at, spelled as Go's SDK spells it
    for looked_at in (b"CONNECTION: keep-alive", b"X-AMZ-TARGET: x"):
        assert lane.read(post(BODY, extra=looked_at + b"\r\n")) is None
    assert lane.read(post(BODY, extra=b"Content-Encoding: identity\r\n")) is None
    assert lane.read(whole + whole) is None
    assert lane.read(whole[:-1]) is None
    assert lane.read(whole) == (GET_ITEM.encode(), BODY)


# The fuzz: with the lane and without it, the same answers. ---------------------------------

_FIELDS = [
    b"Host: proxy",
    b"host: proxy",
    b"User-Agent: sdk",
    b"Connection: keep-alive",
    b"Connection: close",
    b"connection: Keep-Alive",
    b"Accept: */*",
    b"X-Unknown: 1",
    b"Expect: 100-continue",
    b"Content-Encoding: identity",
    b"CONTENT-encoding: identity",
    b"eXpect: 100-continue",
    b"CONNECTION: close",
    b"Amz-Sdk-Invocation-Id: 1",
    b"TRANSFER-ENCODING: chunked",
    b"Transfer-Encoding: chunked",
    f"X-Amz-Target: {GET_ITEM}".encode(),
    f"x-amz-target: {GET_ITEM}".encode(),
    f"X-AMZ-TARGET: {GET_ITEM}".encode(),
    f"X-Amz-Target: {PUT_ITEM}".encode(),
    f"X-Amz-Target:  {GET_ITEM} ".encode(),
    b"Content-Type: application/x-amz-json-1.0",
    b"Connection: Upgrade",
    b"Upgrade: h2c",
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from([b"POST / HTTP/1.1", b"POST / HTTP/1.0", b"POST /x HTTP/1.1"]))
    fields = draw(st.lists(st.sampled_from(_FIELDS), max_size=6))
    body = draw(st.sampled_from([BODY, b"{}", b"not json", b""]))
    chunked = any(f.lower() == b"transfer-encoding: chunked" for f in fields)
    if not chunked:
        length = draw(st.sampled_from([len(body), len(body), max(len(body) - 1, 0)]))
        fields.append(b"Content-Length: %d" % length)
    else:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=st.lists(requests(), min_size=1, max_size=4).map(b"".join),
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=3),
)
async def test_a_connection_answers_the_same_with_the_lane_and_without(
    stream: bytes, cuts: list[int]
) -> None:
    lane_side, reader_side = await warmed(make_proxy()), without_lane(await warmed(make_proxy()))
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(bounds):
        for connection in (lane_side, reader_side):
            if not connection.transport.closing:
                connection.send(stream[start:end])
        for connection in (lane_side, reader_side):
            await connection.settle()
    assert seen(lane_side) == seen(reader_side)
