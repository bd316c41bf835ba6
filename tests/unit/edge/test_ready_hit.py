"""A remembered GetItem hit answered from ready bytes (issue 13): the edge asks
:meth:`Proxy.quick` before it builds a request, and writes its
:class:`~daxproxy.core.wire.ReadyAnswer`.

Pinned here: its bytes are those :func:`answers.encode` writes for the same hit (fresh
request id aside), HEAD and ``Connection: close`` included; a write to the key, or the
table's info changing, never leaves the old bytes on the wire; its metrics and request log
are a normal hit's; ``auth_file``, a ``Content-Encoding``, another target and
``max_in_flight`` keep it off.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from daxproxy.core import wire
from daxproxy.core.config import Settings
from daxproxy.edge import answers
from daxproxy.service.calls import hit_lines
from daxproxy.service.observe import Outcome
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from tests.edge_wire import Wire, make_edge, post
from tests.fakes import FakeTable, HeldDynamoDB
from tests.unit.test_access import checker, signed_request
from tests.unit.test_guards import fake_with, request, s

GET_ITEM = "DynamoDB_20120810.GetItem"
ITEM = {"pk": s("1"), "v": s("one"), "w": {"N": "42"}}
BODY = orjson.dumps({"TableName": "t", "Key": {"pk": s("1")}})


pytestmark = pytest.mark.usefixtures("frozen_date")  # conftest.py


class Counted:
    """Counts the requests that reached :meth:`Proxy.answer` (not answered ready)."""

    def __init__(self, proxy: Proxy) -> None:
        self.calls = 0
        answer = proxy.answer

        def counted(request: ClientRequest) -> Any:
            self.calls += 1
            return answer(request)

        proxy.answer = counted  # type: ignore[method-assign]


def make_proxy(**settings: Any) -> Proxy:
    return build_proxy(Settings(upstream="http://127.0.0.1:1", **settings), fake_with(ITEM))


def raw_answers(wire_: Wire) -> list[bytes]:
    """Every answer written so far (the outbox's too, as at the turn's end), as its bytes."""
    wire_.edge.outbox.flush()
    data = bytes(wire_.transport.written)
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
        out.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return out


def request_id(raw: bytes) -> bytes:
    return re.search(rb"x-amzn-RequestId: ([0-9A-F]+)\r\n", raw)[1]  # type: ignore[index]


def encoded(answer: wire.WireResponse, rid: bytes, **how: bool) -> bytes:
    """``answer`` as answers.encode writes it, with ``rid`` for its request id."""
    headers = [(n, rid.decode() if n == wire.REQUEST_ID_HEADER else v) for n, v in answer.headers]
    head, rest = answers.encode(wire.WireResponse(answer.status, answer.body, headers), **how)
    return head + (rest or b"")


async def warmed(p: Proxy) -> Wire:
    """A connection over which the item was read twice: a miss (the table learned), then
    a hit by Proxy.answer (the body remembered)."""
    wire_ = Wire(make_edge(p))
    wire_.send(post(BODY))
    await wire_.settle()
    wire_.send(post(BODY))
    assert [a.headers["x-daxproxy-cache"] for a in wire_.answers()] == ["miss", "hit"]
    return wire_


def normal_hit(p: Proxy) -> wire.WireResponse:
    """The same hit by Proxy.answer's remembered path, as it was answered before."""
    answer = p.answer(ClientRequest((), BODY, GET_ITEM))
    assert isinstance(answer, wire.WireResponse)
    assert dict(answer.headers)["x-daxproxy-cache"] == "hit"
    return answer


async def test_a_ready_hit_is_the_bytes_encode_writes_with_a_fresh_request_id() -> None:
    p = make_proxy()
    counted = Counted(p)
    connection = await warmed(p)
    for _ in range(3):
        connection.send(post(BODY))
    ready = raw_answers(connection)[2:]
    assert counted.calls == 2  # the warming ones alone reached Proxy.answer
    ids = [request_id(raw) for raw in ready]
    assert len(set(ids)) == 3 and all(len(rid) == 52 for rid in ids)
    expected = normal_hit(p)
    for raw, rid in zip(ready, ids, strict=True):
        assert raw == encoded(expected, rid, close=False)
    assert orjson.loads(expected.body) == {"Item": ITEM}


async def test_a_ready_hit_with_connection_close_says_so_and_closes() -> None:
    p = make_proxy()
    connection = await warmed(p)
    connection.send(post(BODY, extra=b"Connection: close\r\n"))
    raw = raw_answers(connection)[-1]
    assert b"\r\nConnection: close\r\n" in raw
    assert raw == encoded(normal_hit(p), request_id(raw), close=True)
    assert connection.transport.closing


@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize("head_only", [False, True])
@pytest.mark.parametrize("size", [10, 70_000])  # joined, and written as two buffers
def test_encode_writes_a_ready_answer_as_the_same_wire_response(
    close: bool, head_only: bool, size: int
) -> None:
    """HEAD never reaches the DynamoDB route (it is a 405 on any POST path), but encode
    answers it alike."""
    body = orjson.dumps({"Item": {"pk": s("x" * size)}})
    crc = wire.crc32(body)
    ready = wire.ReadyAnswer(hit_lines(body, crc), wire.new_request_id_tail(), body)
    rid = wire.REQUEST_ID_PREFIX + ready.request_id.decode()
    built = wire.WireResponse(
        200,
        body,
        [
            ("Content-Type", wire.JSON_CONTENT_TYPE),
            (wire.REQUEST_ID_HEADER, rid),
            (wire.CRC32_HEADER, crc),
            ("x-daxproxy-cache", "hit"),
        ],
    )
    got = answers.encode(ready, close=close, head_only=head_only)
    assert got == answers.encode(built, close=close, head_only=head_only)


def test_a_ready_answer_names_the_worker_as_every_answer_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(answers._CLOCK, "fixed", "")
    answers.label_worker(3)
    body = b"{}"
    ready = wire.ReadyAnswer(hit_lines(body, "7"), b"1", body)
    head, _ = answers.encode(ready, close=False)
    headers = [("Content-Type", wire.JSON_CONTENT_TYPE)]
    headers += [(wire.REQUEST_ID_HEADER, wire.REQUEST_ID_PREFIX + "1"), (wire.CRC32_HEADER, "7")]
    built = wire.WireResponse(200, body, [*headers, ("x-daxproxy-cache", "hit")])
    assert head == answers.encode(built, close=False)[0]
    assert b"\r\nx-daxproxy-worker: 3\r\n" in head


async def test_a_write_to_the_key_puts_the_new_items_bytes_on_the_wire() -> None:
    """The lines kept for the old entry (its Content-Length and CRC) are never joined to
    another entry's answer: the same length with another CRC, another length, none (whose
    stored CRC is no bytes at all), and an item again."""
    p = make_proxy()
    connection = await warmed(p)
    connection.send(post(BODY))  # the lines are kept
    changes = ({**ITEM, "v": s("two")}, {**ITEM, "v": s("three, longer")}, None, ITEM)
    for new in changes:
        if new is None:  # deleted: the cache holds its absence
            write = request("DeleteItem", TableName="t", Key={"pk": s("1")})
        else:
            write = request("PutItem", TableName="t", Item=new)
        assert (await p.handle(write)).status == 200
        for _ in range(2):  # the first may be a miss; the second is ready again
            connection.send(post(BODY))
            await connection.settle()
            [*_, answer] = connection.answers()
            assert orjson.loads(answer.body) == ({} if new is None else {"Item": new})
            assert answer.headers["x-amz-crc32"] == wire.crc32(answer.body)
        raw = raw_answers(connection)[-1]
        assert raw == encoded(normal_hit(p), request_id(raw), close=False)


async def test_the_tables_info_changing_stops_the_ready_path() -> None:
    p = make_proxy()
    connection = await warmed(p)
    assert p.quick(GET_ITEM.encode(), None, BODY) is not None
    tables = p.tables
    assert tables is not None
    info, at = tables._known["t"]
    # Learned anew (same ARN, so the cache keeps the entry): the body is read again.
    tables._known["t"] = (dataclasses.replace(info, table_id="another"), at)
    assert p.quick(GET_ITEM.encode(), None, BODY) is None
    # Deleted through the proxy: DynamoDB's answer, never the remembered hit.
    assert (await p.handle(request("DeleteTable", TableName="t"))).status == 200
    connection.send(post(BODY))
    await connection.settle()
    answer = connection.answers()[-1]
    assert answer.status == 400 and answer.error == "ResourceNotFoundException"


def counts(p: Proxy) -> list[str]:
    """/metrics' request lines (durations aside: the sums differ)."""
    assert p.metrics is not None
    text = generate_latest(p.metrics.registry).decode()
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith(("daxproxy_request_duration_seconds_count", "daxproxy_table_requests"))
    )


@pytest.mark.parametrize("observed", [False, True])
async def test_a_ready_hit_is_counted_and_logged_as_a_normal_hit(observed: bool) -> None:
    seen: dict[str, list[tuple[object, ...]]] = {"ready": [], "normal": []}

    def listener(name: str) -> Any:
        class Seen:
            def observed(self, o: Outcome) -> None:
                facts = (o.operation, o.table, o.cache, o.status, o.error_type, o.protocol)
                seen[name].append(facts)

        return [Seen()] if observed else []

    settings = Settings(upstream="http://127.0.0.1:1", metrics_per_table=True)
    ready = build_proxy(settings, fake_with(ITEM), observers=listener("ready"))
    normal = build_proxy(settings, fake_with(ITEM), observers=listener("normal"))
    counted = Counted(ready)
    connection = await warmed(ready)
    for _ in range(2):
        await normal.handle(ClientRequest((), BODY, GET_ITEM))
    for _ in range(2):
        connection.send(post(BODY))
        normal_hit(normal)
    assert counted.calls == 2  # the last two were ready
    assert counts(ready) == counts(normal)
    hits = [line for line in counts(ready) if 'cache="hit"' in line and line.endswith(" 3.0")]
    assert [line.split("{")[0] for line in hits] == [
        "daxproxy_request_duration_seconds_count",
        "daxproxy_table_requests_total",
    ]
    assert seen["ready"] == seen["normal"]
    assert len(seen["ready"]) == (4 if observed else 0)
    assert ready.in_flight == normal.in_flight == 0


async def test_a_large_ready_hit_is_written_whole() -> None:
    """Too large to be joined to its head: written as two buffers, as any answer is."""
    big = {"pk": s("big"), "v": s("x" * 70_000)}
    p = build_proxy(Settings(upstream="http://127.0.0.1:1"), fake_with(big))
    body = orjson.dumps({"TableName": "t", "Key": {"pk": s("big")}})
    connection = Wire(make_edge(p))
    for _ in range(3):  # a miss, a hit remembered, a ready hit
        connection.send(post(body))
        await connection.settle()
    answers_ = connection.answers()
    assert [a.headers["x-daxproxy-cache"] for a in answers_] == ["miss", "hit", "hit"]
    assert orjson.loads(answers_[-1].body) == {"Item": big}
    assert not connection.transport.closing


async def test_an_observer_added_after_hits_hears_the_next_ready_hit() -> None:
    """A hit's recorder, bound once the metrics alone observed hits, is let go."""
    p = make_proxy()
    connection = await warmed(p)
    connection.send(post(BODY))  # ready, the metrics alone told
    heard: list[str] = []

    class Observer:
        def observed(self, outcome: Outcome) -> None:
            heard.append(outcome.cache)

    p.add_observer(Observer())
    connection.send(post(BODY))
    assert heard == ["hit"]
    assert any(line.endswith(" 3.0") for line in counts(p) if 'cache="hit"' in line)


async def test_with_an_auth_file_nothing_is_answered_ready(tmp_path: Path) -> None:
    """Not even a body a signed request made the item reads remember: the check reads
    each request's signature."""
    fake = HeldDynamoDB(FakeTable("Orders"))
    fake.put_direct("Orders", ITEM)
    p = build_proxy(Settings(upstream="http://127.0.0.1:1"), fake, access=checker(tmp_path))
    payload = {"TableName": "Orders", "Key": {"pk": s("1")}}
    for label in ("miss", "hit", "hit"):
        answer = await p.handle(signed_request(GET_ITEM, payload))
        assert dict(answer.headers)["x-daxproxy-cache"] == label
    body = orjson.dumps(payload)
    assert p.quick(GET_ITEM.encode(), None, body) is None
    connection = Wire(make_edge(p))
    connection.send(post(body))  # unsigned: refused, as every unsigned request is
    [answer] = connection.answers()
    assert answer.status == 400 and answer.error == "MissingAuthenticationTokenException"


async def test_a_content_encoding_or_another_target_is_never_answered_ready() -> None:
    p = make_proxy()
    connection = await warmed(p)
    assert p.quick(GET_ITEM.encode(), b"gzip", BODY) is None
    assert p.quick(b"DynamoDB_20120810.Query", None, BODY) is None
    assert p.quick(b"dynamodb_20120810.getitem", None, BODY) is None
    # Not gzip: DynamoDB's InternalServerError, never the hit its plain bytes would be.
    connection.send(post(BODY, extra=b"Content-Encoding: gzip\r\n"))
    await connection.settle()
    answer = connection.answers()[-1]
    assert answer.status == 500 and answer.error == "InternalServerError"


async def test_past_max_in_flight_a_remembered_hit_is_shed_and_counted() -> None:
    p = make_proxy(max_in_flight=1)
    connection = await warmed(p)
    p.in_flight = 1  # another request is being handled
    assert p.quick(GET_ITEM.encode(), None, BODY) is None
    connection.send(post(BODY))
    answer = connection.answers()[-1]
    assert answer.status == 400 and answer.error == "ThrottlingException"
    assert p.in_flight == 1
    assert p.metrics is not None and sum(p.metrics.throttled.values()) == 1
    p.in_flight = 0
    connection.send(post(BODY))
    assert connection.answers()[-1].headers["x-daxproxy-cache"] == "hit"
