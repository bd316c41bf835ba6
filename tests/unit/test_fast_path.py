"""The fast path of issue 13: a plain GetItem hit is answered with the body and CRC stored
with its cache entry, and every answer that differs from it is still built afresh.

One test per guard: the stored answer is never served for a projection, for
ReturnConsumedCapacity, for a stale answer, or after a write replaced the entry; its bytes
are charged to the cache's budget. Also here: the edge answers DynamoDB gives (a body its
Content-Encoding cannot undo is a 500 and goes nowhere; several gzip members are one body;
a BatchGetItem read consistently everywhere is relayed byte for byte), the plain integer key
and the routes the proxy remembers.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from daxproxy.core import item_requests
from daxproxy.core.cache import ENTRY_OVERHEAD, ItemCache
from daxproxy.core.config import Settings
from daxproxy.core.errors import InternalServerError
from daxproxy.core.wire import WireResponse
from daxproxy.service import body_memo
from daxproxy.service.observe import Outcome
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.upstream import UpstreamResponse
from tests.fakes import FakeTable, FakeUpstream, HeldDynamoDB
from tests.unit.test_access import checker, signed_request
from tests.unit.test_guards import fake_with, proxy, put, request, s
from tests.unit.test_metrics import ITEM, FakeDynamoDB, get_item
from tests.unit.test_stale import proxy as stale_proxy

ITEM_1 = {"pk": s("1"), "v": s("one"), "w": {"N": "42"}, "m": {"M": {"a": s("x")}}}


def headers(answer: WireResponse) -> dict[str, str]:
    return dict(answer.headers)


def checked(answer: WireResponse, label: str) -> dict[str, Any]:
    """The answer's JSON, once its CRC is that of the exact bytes and its label is last."""
    assert answer.status == 200, answer.body
    assert headers(answer)["x-amz-crc32"] == str(zlib.crc32(answer.body))
    assert answer.headers[-1] == ("x-daxproxy-cache", label)
    body: dict[str, Any] = orjson.loads(answer.body)
    return body


def get(**more: Any) -> ClientRequest:
    return request("GetItem", TableName="t", Key={"pk": s("1")}, **more)


def item_cache(p: Proxy) -> ItemCache:
    assert p.metrics is not None and p.metrics.item_cache is not None
    return p.metrics.item_cache


async def warm(p: Proxy) -> WireResponse:
    miss = await p.handle(get())
    assert checked(miss, "miss") == {"Item": ITEM_1}
    return miss


async def test_a_hit_sends_the_stored_answer_with_its_crc_and_a_fresh_request_id() -> None:
    p = proxy(fake_with(ITEM_1))
    miss = await warm(p)
    first, second = await p.handle(get()), await p.handle(get())
    assert checked(first, "hit") == checked(second, "hit") == {"Item": ITEM_1}
    assert first.body == miss.body  # the very bytes a miss answers with
    ids = {headers(a)["x-amzn-RequestId"] for a in (miss, first, second)}
    assert len(ids) == 3  # the miss carries the upstream's; each hit a fresh one
    assert len(headers(first)["x-amzn-RequestId"]) == 52
    assert headers(first)["Content-Type"] == "application/x-amz-json-1.0"


async def test_a_negative_entry_is_answered_with_an_empty_object() -> None:
    p = proxy(fake_with(ITEM_1))
    absent = request("GetItem", TableName="t", Key={"pk": s("2")})
    assert checked(await p.handle(absent), "miss") == {}
    answer = await p.handle(absent)
    assert checked(answer, "hit") == {} and answer.body == b"{}"


async def test_a_projection_hit_is_projected_not_the_stored_answer() -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    names = {"#v": "v"}
    answer = await p.handle(get(ProjectionExpression="#v, m.a", ExpressionAttributeNames=names))
    assert checked(answer, "hit") == {"Item": {"v": s("one"), "m": {"M": {"a": s("x")}}}}
    answer = await p.handle(get(AttributesToGet=["w"]))
    assert checked(answer, "hit") == {"Item": {"w": {"N": "42"}}}


@pytest.mark.parametrize("capacity", ["TOTAL", "INDEXES"])
async def test_a_hit_that_asks_for_consumed_capacity_gets_zero_not_the_stored_answer(
    capacity: str,
) -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    body = checked(await p.handle(get(ReturnConsumedCapacity=capacity)), "hit")
    assert body["Item"] == ITEM_1
    assert body["ConsumedCapacity"]["CapacityUnits"] == 0.0
    assert body["ConsumedCapacity"]["TableName"] == "t"
    # ReturnConsumedCapacity NONE is the plain answer.
    assert checked(await p.handle(get(ReturnConsumedCapacity="NONE")), "hit") == {"Item": ITEM_1}


async def test_after_a_write_the_hit_sends_the_new_item_not_the_old_stored_answer() -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    assert checked(await p.handle(get()), "hit") == {"Item": ITEM_1}
    assert (await p.handle(put("1", "two"))).status == 200
    answer = await p.handle(get())
    assert checked(answer, "hit") == {"Item": {"pk": s("1"), "v": s("two")}}
    delete = request("DeleteItem", TableName="t", Key={"pk": s("1")})
    assert (await p.handle(delete)).status == 200
    assert checked(await p.handle(get()), "hit") == {}


async def test_a_stale_answer_is_built_afresh_and_labelled_stale() -> None:
    fake = FakeDynamoDB()
    p = stale_proxy(fake)
    assert checked(await p.handle(get_item("1")), "miss") == {"Item": ITEM}
    await asyncio.sleep(0.005)  # past the 1 ms TTL, within the grace
    fake.next_error = InternalServerError("timed out")
    answer = await p.handle(get_item("1"))
    assert checked(answer, "stale") == {"Item": ITEM}
    assert "x-daxproxy-stale-millis" in headers(answer)


async def test_the_stored_answer_is_charged_to_the_budget() -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    stored = item_requests.stored_item(orjson.dumps(ITEM_1))
    framing = len(b'{"Item":}') + 4  # the answer around the item, and its CRC
    assert len(stored) == len(orjson.dumps(ITEM_1)) + framing
    cache = item_cache(p)
    arn_free_key_bytes = len("1")
    assert cache.bytes == ENTRY_OVERHEAD + arn_free_key_bytes + len(stored)


def test_a_stored_answer_holds_the_item_and_the_crc_of_its_answer() -> None:
    encoded = orjson.dumps(ITEM_1)
    stored = item_requests.stored_item(encoded)
    body, crc = item_requests.stored_answer(b"HEAD" + stored, 4)
    assert body == b'{"Item":' + encoded + b"}"
    assert crc == str(zlib.crc32(body))
    assert item_requests.item_of(stored) == encoded
    assert item_requests.item_of(b"HEAD" + stored, 4) == encoded
    assert item_requests.stored_answer(b"HEAD", 4) == (b"{}", str(zlib.crc32(b"{}")))


async def test_batch_get_hits_and_misses_read_the_stored_items() -> None:
    p = proxy(fake_with(ITEM_1, {"pk": s("2"), "v": s("two")}))
    await warm(p)
    keys = [{"pk": s(pk)} for pk in ("1", "2", "3")]
    batch = request("BatchGetItem", RequestItems={"t": {"Keys": keys}})
    for label in ("miss", "hit"):
        body = checked(await p.handle(batch), label)
        assert sorted(i["pk"]["S"] for i in body["Responses"]["t"]) == ["1", "2"]
    # And a GetItem of a key the batch filled sends its stored answer.
    two = request("GetItem", TableName="t", Key={"pk": s("2")})
    assert checked(await p.handle(two), "hit") == {"Item": {"pk": s("2"), "v": s("two")}}


# Answers DynamoDB gives at the edge --------------------------------------------------------

TARGET = "DynamoDB_20120810.GetItem"
PLAIN = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'


def encoded(body: bytes, encoding: str) -> ClientRequest:
    return ClientRequest(
        (("X-Amz-Target", TARGET), ("Content-Encoding", encoding)), body, TARGET, encoding
    )


# Observed on DynamoDB (issue 13): 500 InternalServerError, and nothing applied or forwarded.
# moto answers these with its HTML 500 page (test_readme_promises compares the status).
@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (PLAIN, "gzip"),
        (b"", "gzip"),
        (gzip.compress(PLAIN, mtime=0)[:-10], "gzip"),
        (b"not deflate", "deflate"),
    ],
)
async def test_a_body_its_encoding_cannot_undo_is_a_500_and_goes_nowhere(
    body: bytes, encoding: str
) -> None:
    upstream = FakeUpstream()
    answer = await Proxy(upstream, max_body_bytes=1024).handle(encoded(body, encoding))
    assert answer.status == 500
    assert orjson.loads(answer.body)["__type"].endswith("#InternalServerError")
    assert headers(answer)["x-amz-crc32"] == str(zlib.crc32(answer.body))
    assert upstream.sent == []


async def test_a_write_whose_body_cannot_be_decoded_is_not_applied() -> None:
    fake = fake_with(ITEM_1)
    p = proxy(fake)
    body = orjson.dumps({"TableName": "t", "Item": {"pk": s("1"), "v": s("new")}})
    target = "DynamoDB_20120810.PutItem"
    bad = ClientRequest((("X-Amz-Target", target),), body, target, "gzip")
    assert (await p.handle(bad)).status == 500
    assert checked(await p.handle(get()), "miss") == {"Item": ITEM_1}


async def test_a_gzip_body_of_several_members_is_read_whole_and_forwarded_as_sent() -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    half = len(PLAIN) // 2
    body = gzip.compress(PLAIN[:half]) + gzip.compress(PLAIN[half:])
    assert checked(await p.handle(encoded(body, "gzip")), "hit") == {"Item": ITEM_1}
    upstream = FakeUpstream()
    await Proxy(upstream, max_body_bytes=1024).handle(encoded(body, "gzip"))
    assert upstream.sent[0].body == body


async def test_a_batch_get_read_consistently_everywhere_is_relayed_byte_for_byte() -> None:
    # Odd spacing, an odd key order and a made-up member: only a relay keeps them.
    raw = b'{ "UnprocessedKeys" : {}, "Responses": {"t": [{"pk":{"S":"1"}}]}, "X": 1 }'
    upstream = FakeUpstream(lambda sent: UpstreamResponse(200, [("x-amzn-RequestId", "UP")], raw))
    p = build_proxy(Settings(upstream="http://127.0.0.1:1"), upstream)
    keys = [{"pk": s("1")}]
    batch = request(
        "BatchGetItem",
        RequestItems={"t": {"Keys": keys, "ConsistentRead": True}},
        ReturnConsumedCapacity="TOTAL",
    )
    got = await p.handle(batch)
    assert got.status == 200 and got.body == raw
    assert headers(got)["x-amzn-RequestId"] == "UP"
    assert got.headers[-1] == ("x-daxproxy-cache", "bypass")
    # Sent as the client sent it, and nothing else was (not even a DescribeTable).
    assert [(x.target.operation, x.body) for x in upstream.sent] == [("BatchGetItem", batch.body)]


async def test_a_batch_get_read_consistently_in_part_still_serves_the_rest() -> None:
    fake = HeldDynamoDB(FakeTable("t"), FakeTable("u"))
    fake.put_direct("t", ITEM_1)
    fake.put_direct("u", {"pk": s("9")})
    p = proxy(fake)
    await warm(p)
    batch = request(
        "BatchGetItem",
        RequestItems={
            "t": {"Keys": [{"pk": s("1")}]},
            "u": {"Keys": [{"pk": s("9")}], "ConsistentRead": True},
        },
    )
    body = checked(await p.handle(batch), "miss")
    assert body["Responses"] == {"t": [ITEM_1], "u": [{"pk": s("9")}]}


# The hit answered at once -------------------------------------------------------------------


async def test_a_hit_is_answered_at_once_and_anything_that_waits_as_a_coroutine() -> None:
    p = proxy(fake_with(ITEM_1))
    pending = p.answer(get())
    assert asyncio.iscoroutine(pending)  # a miss: the caller runs it
    assert p.in_flight == 1  # in flight until that coroutine ends
    assert checked(await pending, "miss") == {"Item": ITEM_1}
    assert p.in_flight == 0
    answer = p.answer(get())
    assert isinstance(answer, WireResponse)  # no coroutine, task or future for a hit
    assert checked(answer, "hit") == {"Item": ITEM_1} and p.in_flight == 0
    # Answers the proxy gives at once besides a hit: an error found in the request.
    target = "DynamoDB_20120810.GetItem"
    bad = p.answer(ClientRequest((("X-Amz-Target", target),), b"not json", target))
    assert isinstance(bad, WireResponse) and bad.status == 400 and p.in_flight == 0
    # And what a hit at once may not answer waits: a consistent read is forwarded.
    consistent = p.answer(get(ConsistentRead=True))
    assert asyncio.iscoroutine(consistent)
    assert (await consistent).headers[-1] == ("x-daxproxy-cache", "bypass")


async def test_each_get_item_counts_one_hit_or_one_miss() -> None:
    """The answer at once looks without counting a miss: GetItem counts it (else each miss
    would count twice)."""
    p = proxy(fake_with(ITEM_1))
    stats = item_cache(p).stats
    await warm(p)
    assert (stats.hits, stats.misses) == (0, 1)
    await p.handle(get())
    assert (stats.hits, stats.misses) == (1, 1)
    item_cache(p).drop_table(next(iter(p._tables.arns())))  # type: ignore[union-attr]
    assert checked(await p.handle(get()), "miss") == {"Item": ITEM_1}
    assert (stats.hits, stats.misses) == (1, 2)


# Remembered routes --------------------------------------------------------------------------


async def test_only_known_operations_routes_are_remembered() -> None:
    upstream = FakeUpstream()
    p = Proxy(upstream, max_body_bytes=1024)
    for n in range(50):
        target = f"DynamoDB_20120810.Future{n}"
        await p.handle(ClientRequest((("X-Amz-Target", target),), b"{}", target))
    assert p._routes == {}
    target = "DynamoDB_20120810.ListTables"
    await p.handle(ClientRequest((("X-Amz-Target", target),), b"{}", target))
    assert list(p._routes) == [target]


# Remembered GetItem bodies -----------------------------------------------------------------


def raw_get(body: bytes, encoding: str | None = None) -> ClientRequest:
    target = "DynamoDB_20120810.GetItem"
    return ClientRequest((("X-Amz-Target", target),), body, target, encoding)


async def test_a_remembered_body_is_answered_as_a_read_one_would_be() -> None:
    p = proxy(fake_with(ITEM_1))
    stats = item_cache(p).stats
    await warm(p)
    answers = [p.answer(get()) for _ in range(3)]
    for answer in answers:
        assert isinstance(answer, WireResponse)
        assert checked(answer, "hit") == {"Item": ITEM_1}
    assert len({headers(a)["x-amzn-RequestId"] for a in answers}) == 3
    assert (stats.hits, stats.misses) == (3, 1)


async def test_a_body_that_asked_for_capacity_is_never_answered_with_the_stored_answer() -> None:
    """Only bodies whose hit is the stored answer are remembered."""
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    for _ in range(3):
        body = checked(await p.handle(get(ReturnConsumedCapacity="TOTAL")), "hit")
        assert body["ConsumedCapacity"]["CapacityUnits"] == 0.0


async def test_a_compressed_body_is_not_remembered_as_plain_bytes() -> None:
    """Gzip bytes remembered as a body would answer the same bytes sent uncompressed,
    which DynamoDB refuses as not JSON."""
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    compressed = gzip.compress(PLAIN)
    assert checked(await p.handle(raw_get(compressed, "gzip")), "hit") == {"Item": ITEM_1}
    answer = await p.handle(raw_get(compressed))
    assert answer.status == 400
    assert orjson.loads(answer.body)["__type"].endswith("#SerializationException")


async def test_a_remembered_body_sent_with_a_content_encoding_is_decoded_as_any_other() -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    assert checked(await p.handle(raw_get(PLAIN)), "hit") == {"Item": ITEM_1}
    answer = await p.handle(raw_get(PLAIN, "gzip"))
    assert answer.status == 500  # not gzip: DynamoDB's InternalServerError, never the hit


def room_for_four(monkeypatch: pytest.MonkeyPatch) -> None:
    """A memo bound that holds four of the bodies below (one digit each)."""
    one = len(request("GetItem", TableName="t", Key={"pk": s("0")}).body)
    monkeypatch.setattr(body_memo, "MEMO_BYTES", 4 * (one + body_memo.ENTRY_BYTES))


async def test_remembered_bodies_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    room_for_four(monkeypatch)
    p = proxy(fake_with(*({"pk": s(str(n))} for n in range(10))))
    for n in range(10):
        for _ in range(2):
            await p.handle(request("GetItem", TableName="t", Key={"pk": s(str(n))}))
    memo = p._remembered.__self__._entries  # type: ignore[union-attr]
    assert len(memo) == 4
    # The newest are kept, and still answer.
    answer = await p.handle(request("GetItem", TableName="t", Key={"pk": s("9")}))
    assert checked(answer, "hit") == {"Item": {"pk": s("9")}}


GET_ITEM = b"DynamoDB_20120810.GetItem"


@pytest.mark.parametrize("way", ["handle", "quick"])
async def test_the_body_answered_least_recently_is_forgotten_first(
    monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """A body answered from the memo moves to its end: a hot body is never the one
    forgotten while colder ones are kept (remembered first is not forgotten first). The
    same whether the hit is answered as a request or as the edge's ready answer."""
    room_for_four(monkeypatch)
    p = proxy(fake_with(*({"pk": s(str(n))} for n in range(6))))

    def get_key(n: int) -> ClientRequest:
        return request("GetItem", TableName="t", Key={"pk": s(str(n))})

    for n in range(4):  # remembered in the order 0, 1, 2, 3
        for _ in range(2):
            await p.handle(get_key(n))
    memo = p._remembered.__self__._entries  # type: ignore[union-attr]
    first = next(iter(memo))
    if way == "handle":
        checked(await p.handle(get_key(0)), "hit")  # answered from the memo: the most recent
    else:
        assert p.quick(GET_ITEM, None, get_key(0).body) is not None
    await p.handle(get_key(4))  # a fifth body: the least recently answered one goes
    assert first in memo and len(memo) == 4
    assert [orjson.loads(body)["Key"]["pk"]["S"] for body in memo] == ["2", "3", "0", "4"]


async def test_a_remembered_body_whose_key_the_cache_no_longer_holds_is_not_quick() -> None:
    p = proxy(fake_with(ITEM_1))
    await warm(p)
    checked(await p.handle(get()), "hit")  # the table known: the body is remembered
    assert p.quick(GET_ITEM, None, get().body) is not None
    item_cache(p).drop_all()
    assert p.quick(GET_ITEM, None, get().body) is None  # and nothing raised
    assert checked(await p.handle(get()), "miss") == {"Item": ITEM_1}


def hits_counted(p: Proxy) -> list[str]:
    """The request-duration count lines of GetItem hits, as /metrics says them."""
    assert p.metrics is not None
    lines = generate_latest(p.metrics.registry).decode().splitlines()
    return [
        line.rsplit(" ", 1)[1]
        for line in lines
        if line.startswith("daxproxy_request_duration_seconds_count{")
        and 'cache="hit"' in line
        and 'operation="GetItem"' in line
    ]


@pytest.mark.parametrize("observed", [False, True])
async def test_a_remembered_hit_is_observed_as_a_get_item_hit_of_its_table(
    observed: bool,
) -> None:
    """Told to the metrics directly, or as an Outcome when others listen too."""
    seen: list[Outcome] = []

    class Seen:
        def observed(self, outcome: Outcome) -> None:
            seen.append(outcome)

    observers = [Seen()] if observed else []
    settings = Settings(upstream="http://127.0.0.1:1")
    p = build_proxy(settings, fake_with(ITEM_1), observers=observers)
    await warm(p)
    for _ in range(2):
        assert isinstance(p.answer(get()), WireResponse)
    assert hits_counted(p) == ["2.0"]
    if observed:
        assert [(o.operation, o.table, o.cache, o.status) for o in seen] == [
            ("GetItem", "t", "miss", 200),
            ("GetItem", "t", "hit", 200),
            ("GetItem", "t", "hit", 200),
        ]


async def test_with_an_auth_file_every_request_is_checked_remembered_or_not(
    tmp_path: Path,
) -> None:
    fake = HeldDynamoDB(FakeTable("Orders"))
    fake.put_direct("Orders", ITEM_1)
    p = build_proxy(Settings(upstream="http://127.0.0.1:1"), fake, access=checker(tmp_path))
    target = "DynamoDB_20120810.GetItem"
    payload = {"TableName": "Orders", "Key": {"pk": s("1")}}
    for label in ("miss", "hit", "hit"):
        assert checked(await p.handle(signed_request(target, payload)), label)["Item"] == ITEM_1
    unsigned = await p.handle(raw_get(orjson.dumps(payload)))
    assert unsigned.status == 400
    assert b"MissingAuthenticationTokenException" in unsigned.body


async def test_a_remembered_hit_counts_for_its_table_with_per_table_metrics() -> None:
    settings = Settings(upstream="http://127.0.0.1:1", metrics_per_table=True)
    p = build_proxy(settings, fake_with(ITEM_1))
    await warm(p)
    for _ in range(2):
        assert isinstance(p.answer(get()), WireResponse)
    assert p.metrics is not None
    lines = generate_latest(p.metrics.registry).decode().splitlines()
    hits = [
        line.rsplit(" ", 1)[1]
        for line in lines
        if line.startswith("daxproxy_table_requests")
        and 'table="t"' in line
        and 'cache="hit"' in line
        and 'operation="GetItem"' in line
    ]
    assert hits == ["2.0"]
