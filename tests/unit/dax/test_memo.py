"""The DAX GetItem memos (service/dax_memo.py): bounded, keyed by all they depend on, and
never the source of an answer the plain path would not give."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daxproxy.core.config import Settings
from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, methods, values
from daxproxy.dax.session import Request
from daxproxy.service import dax_calls
from daxproxy.service.dax_calls import DaxService
from daxproxy.service.dax_memo import get_item_shape
from daxproxy.service.memo import Memo
from daxproxy.service.proxy import ClientRequest
from daxproxy.service.runtime import build_proxy
from tests.fakes import FakeTable, HeldDynamoDB

ENDPOINT = (b"\x7f\x00\x00\x01", 8111)
HASH = KeySchema("pk", "S", None, None)
HASH_RANGE = KeySchema("pk", "S", "sk", "S")


def s(value: str) -> dict[str, str]:
    return {"S": value}


def test_a_memo_forgets_the_oldest_past_its_entries() -> None:
    memo: Memo[str, bytes] = Memo(max_entries=2, max_bytes=100)
    for key in "abc":
        memo.put(key, key.encode(), 1)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, b"b", b"c")
    assert len(memo) == 2 and memo.bytes == 2


def test_a_memo_forgets_the_least_recently_used_not_the_first_put() -> None:
    memo: Memo[str, bytes] = Memo(max_entries=2, max_bytes=100)
    memo.put("a", b"a", 1)
    memo.put("b", b"b", 1)
    assert memo.get("a") == b"a"  # "a" used after "b" was put
    memo.put("c", b"c", 1)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (b"a", None, b"c")


def test_a_memo_forgets_the_oldest_past_its_bytes_and_never_holds_a_value_too_big() -> None:
    memo: Memo[str, bytes] = Memo(max_entries=10, max_bytes=10)
    memo.put("a", b"a", 6)
    memo.put("b", b"b", 4)
    memo.put("c", b"c", 3)  # 13 > 10: "a" goes
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, b"b", b"c")
    assert memo.bytes == 7
    memo.put("huge", b"x", 11)
    assert memo.get("huge") is None and memo.bytes == 7
    memo.put("b", b"B", 2)  # a key put again holds the new value, counted once
    assert (memo.get("b"), memo.bytes, len(memo)) == (b"B", 5, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {int(methods.Param.CONSISTENT_READ): True},  # True == 1, but not the same request
        {int(methods.Param.PROJECTION_EXPRESSION): b"\x80"},
        {int(methods.Param.RETURN_CONSUMED_CAPACITY): 1.0},
        {methods.Param.RETURN_CONSUMED_CAPACITY: 1},  # never decoded from CBOR
        [],
    ],
)
def test_only_plain_integer_options_are_remembered(kwargs: Any) -> None:
    assert get_item_shape((b"t", b"1", kwargs), HASH) is None


def test_a_shape_is_told_apart_by_schema_and_by_the_types_it_was_sent_with() -> None:
    capacity = {int(methods.Param.RETURN_CONSUMED_CAPACITY): 1}  # as CBOR decodes it
    shapes = {
        get_item_shape((b"t", b"1", None), HASH),
        get_item_shape((b"t", b"1", None), HASH_RANGE),
        get_item_shape(("t", b"1", None), HASH),
        get_item_shape((b"t", b"1", capacity), HASH),
    }
    assert None not in shapes and len(shapes) == 4
    # No options and an empty map are the same request.
    assert get_item_shape((b"t", b"1", {}), HASH) == get_item_shape((b"t", b"1", None), HASH)


# Through the service --------------------------------------------------------------------


def service(*tables: FakeTable) -> tuple[DaxService, HeldDynamoDB]:
    fake = HeldDynamoDB(*tables)
    proxy = build_proxy(Settings(upstream="http://127.0.0.1:1"), fake)
    assert proxy.tables is not None
    return DaxService(proxy, proxy.tables), fake


def get(table: str, key: dict[str, Any], schema: KeySchema, **kwargs: Any) -> Request:
    return Request(methods.GET_ITEM, (table.encode(), values.encode_key(key, schema), kwargs))


async def answer(dax: DaxService, request: Request) -> bytes:
    reply = await dax.answer(request, ENDPOINT)
    assert reply is not None
    return reply


async def test_the_same_answer_body_under_two_schemas_gets_each_its_own_reply() -> None:
    """The reply memo is keyed by the schema: a table keyed by pk alone sends sk among the
    values, one keyed by pk and sk does not."""
    item = {"pk": s("1"), "sk": s("a"), "v": s("x")}
    dax, fake = service(FakeTable("h"), FakeTable("hr", range_key="sk"))
    fake.put_direct("h", item)
    fake.put_direct("hr", item)
    by_hash = get("h", {"pk": s("1")}, HASH)
    by_both = get("hr", {"pk": s("1"), "sk": s("a")}, HASH_RANGE)
    for request, schema in ((by_hash, HASH), (by_both, HASH_RANGE)):
        for _ in range(3):  # a miss, then hits answered from the memos
            reply = await answer(dax, request)
            assert reply == calls.get_item_reply({"Item": item}, schema, dax.lists)


async def test_after_a_write_the_reply_is_the_new_items() -> None:
    dax, fake = service(FakeTable("t"))
    fake.put_direct("t", {"pk": s("1"), "v": s("old")})
    request = get("t", {"pk": s("1")}, HASH)
    for _ in range(2):
        await answer(dax, request)
    target = "DynamoDB_20120810.PutItem"  # written through HTTP: the same cache
    body = orjson.dumps({"TableName": "t", "Item": {"pk": s("1"), "v": s("new")}})
    assert (await dax._proxy.handle(ClientRequest((), body, target))).status == 200
    reply = await answer(dax, request)
    assert reply == calls.get_item_reply({"Item": {"pk": s("1"), "v": s("new")}}, HASH, dax.lists)


async def test_an_error_is_answered_afresh_every_time() -> None:
    dax, _ = service(FakeTable("t"))
    request = get("gone", {"pk": s("1")}, HASH)
    first, second = await answer(dax, request), await answer(dax, request)
    assert b"ResourceNotFoundException" in first and b"ResourceNotFoundException" in second


async def test_the_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dax_calls, "MEMO_ENTRIES", 3)  # read when a service is made
    dax, fake = service(FakeTable("t"))
    for n in range(10):
        fake.put_direct("t", {"pk": s(str(n)), "v": s(f"value {n}")})
    for n in range(10):
        await answer(dax, get("t", {"pk": s(str(n))}, HASH))
    assert len(dax._get_bodies) == 3 and len(dax._get_replies) == 3


@pytest.mark.parametrize("key", ["1", ["1"], {"1": 1}, None])
async def test_a_key_that_is_not_bytes_is_refused_as_the_plain_path_refuses_it(key: Any) -> None:
    dax, fake = service(FakeTable("t"))
    fake.put_direct("t", {"pk": s("1")})
    assert get_item_shape((b"t", key, None), HASH) is None
    reply = await answer(dax, Request(methods.GET_ITEM, (b"t", key, None)))
    assert b"ValidationException" in reply and b"a key is a byte string" in reply
