"""Every guard of the item and query caches has a test here that fails without it.

The proxy is assembled by ``build_proxy`` as in production, in front of
:class:`~tests.fakes.HeldDynamoDB`: a DynamoDB that reads or changes its state when a
request arrives and answers when the test releases it. So a read can read early and answer
late, and two writes can answer in the other order, as on a real network; each test then
asserts only what a client sees through ``Proxy.handle``: the status and the item. Which
guard each test pins is said in its docstring (checked by deleting the guard and watching
the test fail; ``make mutants`` checks the rest, see tests/MUTANTS.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import orjson

from daxproxy.core import operations
from daxproxy.core.cache import (
    ENTRY_OVERHEAD,
    MAX_DROPPED_TABLES,
    Eviction,
    ItemCache,
    entry_size,
)
from daxproxy.core.config import Settings
from daxproxy.core.wire import WireResponse, parse_target
from daxproxy.service.calls import Call
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.runtime import build_proxy
from daxproxy.service.tables import TableRegistry
from tests.fakes import FakeTable, HeldDynamoDB, _Refused


def proxy(fake: HeldDynamoDB, **settings: Any) -> Proxy:
    return build_proxy(Settings(upstream="http://127.0.0.1:1", **settings), fake)


def request(operation: str, **payload: Any) -> ClientRequest:
    target = f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), orjson.dumps(payload), target)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def item(pk: str, v: str) -> dict[str, Any]:
    return {"pk": s(pk), "v": s(v)}


def put(pk: str, v: str) -> ClientRequest:
    return request("PutItem", TableName="t", Item=item(pk, v))


def update(pk: str, v: str, **more: Any) -> ClientRequest:
    return request(
        "UpdateItem",
        TableName="t",
        Key={"pk": s(pk)},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": s(v)},
        **more,
    )


def query() -> ClientRequest:
    return request(
        "Query",
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("1")},
    )


def cache_of(answer: WireResponse) -> str:
    return dict(answer.headers)["x-daxproxy-cache"]


async def get(p: Proxy, pk: str = "1") -> tuple[dict[str, Any] | None, str]:
    """GetItem through the proxy: the item (None: no such item) and what the cache did."""
    answer = await p.handle(request("GetItem", TableName="t", Key={"pk": s(pk)}))
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body).get("Item"), cache_of(answer)


async def batch_get(p: Proxy, *pks: str) -> list[dict[str, Any]]:
    keys = [{"pk": s(pk)} for pk in pks]
    answer = await p.handle(request("BatchGetItem", RequestItems={"t": {"Keys": keys}}))
    assert answer.status == 200, answer.body
    body = orjson.loads(answer.body)
    assert body["UnprocessedKeys"] == {}
    items: list[dict[str, Any]] = body["Responses"].get("t", [])
    return items


async def query_items(p: Proxy) -> tuple[list[dict[str, Any]], str]:
    answer = await p.handle(query())
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body)["Items"], cache_of(answer)


async def ok(p: Proxy, call: ClientRequest) -> None:
    answer = await p.handle(call)
    assert answer.status == 200, answer.body


async def cached(p: Proxy, value: dict[str, Any]) -> None:
    """Read key 1 twice: a miss that stores ``value``, then a hit that serves it."""
    assert await get(p) == (value, "miss")
    assert await get(p) == (value, "hit")


def fake_with(*items: dict[str, Any]) -> HeldDynamoDB:
    fake = HeldDynamoDB(FakeTable("t"))
    for each in items:
        fake.put_direct("t", each)
    return fake


# Fills overlapped by a write ---------------------------------------------------------------


async def test_a_get_item_that_read_before_a_write_and_answered_after_it_is_not_stored() -> None:
    """The ``clean`` check of GetItem's fill (service/item_reads.py)."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    held = fake.hold("GetItem")
    reading = asyncio.create_task(get(p))
    await held.wait_reached()  # DynamoDB has read "old"
    await ok(p, put("1", "new"))  # through the proxy, answered before the read
    held.release()
    assert await reading == (item("1", "old"), "miss")  # what DynamoDB read: fine to answer
    assert (await get(p))[0] == item("1", "new")  # but not to keep


async def test_a_batch_get_that_read_before_a_write_and_answered_after_it_is_not_stored() -> None:
    """The ``clean`` check of BatchGetItem's fills (service/item_reads.py)."""
    fake = fake_with(item("1", "old"), item("2", "two"))
    p = proxy(fake)
    held = fake.hold("BatchGetItem")
    reading = asyncio.create_task(batch_get(p, "1", "2"))
    await held.wait_reached()
    await ok(p, put("1", "new"))
    held.release()
    assert sorted(await reading, key=str) == sorted([item("1", "old"), item("2", "two")], key=str)
    assert (await get(p))[0] == item("1", "new")
    assert await get(p, "2") == (item("2", "two"), "hit")  # the untouched key was stored


async def test_unprocessed_keys_of_a_batch_get_go_back_to_the_client_and_are_not_stored() -> None:
    """BatchGetItem's ``UnprocessedKeys`` (service/item_reads.py ``_merge``): a key DynamoDB
    did not read is neither an item nor "no such item"."""
    fake = fake_with(item("1", "one"), item("2", "two"))
    p = proxy(fake)
    keys = [{"pk": s("1")}, {"pk": s("2")}, {"pk": s("3")}]
    fake.hold("BatchGetItem", unprocessed=(keys[1],)).release()
    answer = await p.handle(request("BatchGetItem", RequestItems={"t": {"Keys": keys}}))
    assert answer.status == 200
    body = orjson.loads(answer.body)
    assert body["Responses"] == {"t": [item("1", "one")]}
    assert body["UnprocessedKeys"] == {"t": {"Keys": [keys[1]]}}
    assert await get(p, "2") == (item("2", "two"), "miss")
    assert await get(p, "1") == (item("1", "one"), "hit")
    assert await get(p, "3") == (None, "hit")


async def test_a_get_item_that_read_before_an_ambiguous_write_is_not_stored() -> None:
    """The write's answer was lost (it timed out after DynamoDB applied it): the fill that
    read the old item must not be stored. Guarded twice: by the ``clean`` check and by the
    hold after an ambiguous write; the test fails only without both."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    reading_held = fake.hold("GetItem")
    reading = asyncio.create_task(get(p))
    await reading_held.wait_reached()
    write_held = fake.hold("PutItem", timeout=True)
    write_held.release()
    assert (await p.handle(put("1", "new"))).status == 500
    reading_held.release()
    await reading
    assert (await get(p))[0] == item("1", "new")


# Writes that overlap each other ------------------------------------------------------------


async def answered_out_of_order(
    fake: HeldDynamoDB, p: Proxy, operation: str, write: Callable[[str, str], ClientRequest]
) -> None:
    """Two ``operation`` writes of key 1 through the proxy, v="a" then v="b": DynamoDB
    applies them in that order (it holds "b") but answers "b" first."""
    first, second = fake.hold(operation), fake.hold(operation)
    writing_a = asyncio.create_task(ok(p, write("1", "a")))
    await first.wait_reached()
    writing_b = asyncio.create_task(ok(p, write("1", "b")))
    await second.wait_reached()
    assert fake.item("t", pk="1") == item("1", "b")
    second.release()
    await writing_b
    first.release()
    await writing_a


async def test_two_puts_to_one_key_answered_out_of_order_leave_it_to_be_read_again() -> None:
    """``key in ticket.contended`` (service/item_writes.py): DynamoDB applied "a" then "b"
    but answered "b" first; storing each answer as it comes would keep "a"."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await answered_out_of_order(fake, p, "PutItem", put)
    assert await get(p) == (item("1", "b"), "miss")


async def test_two_updates_to_one_key_answered_out_of_order_leave_it_to_be_read_again() -> None:
    """``updated not in ticket.contended`` (service/item_writes.py): an UpdateItem's ALL_NEW
    answer is stored only when no other write to its key overlapped it."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await answered_out_of_order(fake, p, "UpdateItem", update)
    assert (await get(p))[0] == item("1", "b")


async def test_one_write_at_a_time_stores_what_it_wrote() -> None:
    """The other side of ``contended``: a write no other write overlapped is stored, so the
    guards above are not passed by evicting everything."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await ok(p, put("1", "a"))
    assert await get(p) == (item("1", "a"), "hit")
    await ok(p, update("1", "b"))
    assert await get(p) == (item("1", "b"), "hit")
    await ok(p, request("DeleteItem", TableName="t", Key={"pk": s("1")}))
    assert await get(p) == (None, "hit")


# Writes whose outcome is not what they asked -------------------------------------------------


async def test_unprocessed_items_of_a_batch_write_are_not_treated_as_written() -> None:
    """BatchWriteItem's ``UnprocessedItems`` (service/item_writes.py): DynamoDB did not write
    them, so the cache keeps what it held and the processed ones are stored."""
    fake = fake_with(item("1", "old"), item("2", "two"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    assert (await get(p, "2"))[1] == "miss"
    put_1 = {"PutRequest": {"Item": item("1", "new")}}
    delete_2 = {"DeleteRequest": {"Key": {"pk": s("2")}}}
    put_3 = {"PutRequest": {"Item": item("3", "three")}}
    fake.hold("BatchWriteItem", unprocessed=(put_1, delete_2)).release()
    answer = await p.handle(request("BatchWriteItem", RequestItems={"t": [put_1, delete_2, put_3]}))
    assert answer.status == 200
    assert orjson.loads(answer.body)["UnprocessedItems"] == {"t": [put_1, delete_2]}
    assert await get(p) == (item("1", "old"), "hit")
    assert await get(p, "2") == (item("2", "two"), "hit")
    assert await get(p, "3") == (item("3", "three"), "hit")


async def test_a_write_answered_with_a_500_after_it_was_applied_is_read_again() -> None:
    """A 5xx evicts the written key (service/item_writes.py): the write may have happened."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.hold("PutItem", status=500).release()
    assert (await p.handle(put("1", "new"))).status == 500
    assert await get(p) == (item("1", "new"), "miss")


async def test_a_write_that_timed_out_after_it_was_applied_is_read_again() -> None:
    """No answer evicts the written key (service/item_writes.py): the write may have happened."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.hold("UpdateItem", timeout=True).release()
    assert (await p.handle(update("1", "new"))).status == 500
    assert await get(p) == (item("1", "new"), "miss")


async def test_a_transaction_evicts_its_keys() -> None:
    """TransactWriteItems' keys are evicted, never stored from the request."""
    fake = fake_with(item("1", "old"), item("2", "two"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await get(p, "2")
    actions = [
        {
            "Update": {
                "TableName": "t",
                "Key": {"pk": s("1")},
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": s("new")},
            }
        },
        {"Put": {"TableName": "t", "Item": item("2", "new")}},
    ]
    await ok(p, request("TransactWriteItems", TransactItems=actions))
    assert await get(p) == (item("1", "new"), "miss")
    assert await get(p, "2") == (item("2", "new"), "miss")


# Tables that change --------------------------------------------------------------------------


async def test_update_table_forgets_the_tables_items() -> None:
    """UpdateTable drops the table's items (service/item_writes.py ``table_change``): here
    the item changed behind the proxy's back, which only the TTL would otherwise reveal."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.put_direct("t", item("1", "new"))
    await ok(p, request("UpdateTable", TableName="t", BillingMode="PAY_PER_REQUEST"))
    assert await get(p) == (item("1", "new"), "miss")


async def test_update_table_forgets_the_tables_query_pages() -> None:
    """UpdateTable drops the table's query pages, in mode dax too."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    assert await query_items(p) == ([item("1", "old")], "miss")
    assert await query_items(p) == ([item("1", "old")], "hit")
    fake.put_direct("t", item("1", "new"))
    await ok(p, request("UpdateTable", TableName="t", BillingMode="PAY_PER_REQUEST"))
    assert await query_items(p) == ([item("1", "new")], "miss")


async def test_a_table_deleted_and_created_with_another_key_is_not_read_by_the_old_key() -> None:
    """DeleteTable forgets the key schema (service/item_writes.py ``table_change``): with
    the old schema the proxy would key the new table's items by the old key attribute and
    serve a GetItem DynamoDB refuses."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await ok(p, request("DeleteTable", TableName="t"))
    await ok(
        p,
        request(
            "CreateTable",
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        ),
    )
    await ok(p, request("PutItem", TableName="t", Item={"id": s("9"), "pk": s("1")}))
    answer = await p.handle(request("GetItem", TableName="t", Key={"pk": s("1")}))
    assert answer.status == 400
    assert orjson.loads(answer.body)["__type"].endswith("#ValidationException")
    answer = await p.handle(request("GetItem", TableName="t", Key={"id": s("9")}))
    assert orjson.loads(answer.body) == {"Item": {"id": s("9"), "pk": s("1")}}


async def test_a_partiql_write_forgets_the_items_of_its_table() -> None:
    """A PartiQL statement that writes drops its table's items (service/item_writes.py)."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    statement = 'UPDATE "t" SET "v" = ? WHERE "pk" = ?'
    await ok(p, request("ExecuteStatement", Statement=statement, Parameters=[s("new"), s("1")]))
    assert await get(p) == (item("1", "new"), "miss")


# Query pages ---------------------------------------------------------------------------------


async def test_a_query_that_read_before_a_table_drop_and_answered_after_it_is_not_stored() -> None:
    """The drop epoch of a Query fill (service/query_cache.py): a PartiQL write drops the
    table's pages while the Query, which read the old item, is on its way back."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    held = fake.hold("Query")
    reading = asyncio.create_task(query_items(p))
    await held.wait_reached()
    statement = 'UPDATE "t" SET "v" = ? WHERE "pk" = ?'
    await ok(p, request("ExecuteStatement", Statement=statement, Parameters=[s("new"), s("1")]))
    held.release()
    assert await reading == ([item("1", "old")], "miss")
    assert await query_items(p) == ([item("1", "new")], "miss")


async def test_a_query_page_is_stored_when_nothing_overlapped_it() -> None:
    """The other side of the epoch: an undisturbed fill is stored (and mode dax keeps it
    across a write, as DAX does)."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    assert await query_items(p) == ([item("1", "old")], "miss")
    await ok(p, put("1", "new"))
    assert await query_items(p) == ([item("1", "old")], "hit")


async def test_strict_mode_drops_the_tables_pages_when_a_write_starts() -> None:
    """Strict mode's drop as a write starts (service/item_writes.py ``write``): a Query
    while the write is on its way (DynamoDB already applied it) is not served the page
    cached before it."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake, mode="strict")
    assert await query_items(p) == ([item("1", "old")], "miss")
    assert await query_items(p) == ([item("1", "old")], "hit")
    held = fake.hold("PutItem")
    writing = asyncio.create_task(ok(p, put("1", "new")))
    await held.wait_reached()
    assert await query_items(p) == ([item("1", "new")], "miss")
    held.release()
    await writing


async def test_strict_mode_drops_the_tables_pages_when_a_write_ends() -> None:
    """Strict mode's drop as a write ends (service/item_writes.py ``write``): a Query that
    started during the write, after its first drop, read the item before the write reached
    DynamoDB; its page must not outlive the write."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake, mode="strict")
    held = fake.hold("PutItem", late=True)
    writing = asyncio.create_task(ok(p, put("1", "new")))
    await held.wait_reached()  # on its way: DynamoDB still holds "old"
    assert await query_items(p) == ([item("1", "old")], "miss")
    held.release()
    await writing
    assert await query_items(p) == ([item("1", "new")], "miss")


async def test_a_write_whose_answer_was_lost_holds_its_key_until_it_can_no_longer_land() -> None:
    """The hold after an ambiguous write (core/cache.py ``hold``, service/item_writes.py
    ``_unsure``): the write timed out before reaching DynamoDB and may still land, so a
    read meanwhile is answered but not stored."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.hold("PutItem", timeout=True, applied=False).release()
    assert (await p.handle(put("1", "new"))).status == 500
    assert await get(p) == (item("1", "old"), "miss")
    assert await get(p) == (item("1", "old"), "miss")  # not stored
    fake.put_direct("t", item("1", "new"))  # the lost write lands
    assert await get(p) == (item("1", "new"), "miss")


async def test_strict_mode_holds_the_pages_of_a_table_whose_write_was_lost() -> None:
    """The same hold for query pages in strict mode (service/query_cache.py
    ``write_unsure``)."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake, mode="strict")
    fake.hold("PutItem", timeout=True, applied=False).release()
    assert (await p.handle(put("1", "new"))).status == 500
    assert await query_items(p) == ([item("1", "old")], "miss")
    assert await query_items(p) == ([item("1", "old")], "miss")  # not stored
    fake.put_direct("t", item("1", "new"))
    assert await query_items(p) == ([item("1", "new")], "miss")


async def test_a_write_the_proxy_cannot_read_retires_the_query_fills_in_flight() -> None:
    """A PartiQL statement the proxy cannot read (here: it has a comment) drops every page
    (core/cache.py ``drop_all``), and a Query in flight across it is not stored, however
    many drops came before (the generation only grows)."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    statement = 'UPDATE "t" SET "v" = ? WHERE "pk" = ?'
    await query_items(p)  # the proxy learns the table
    for value in ("a", "old"):  # drops of the table before: the generation is past 1
        await ok(p, request("ExecuteStatement", Statement=statement, Parameters=[s(value), s("1")]))
    held = fake.hold("Query")
    reading = asyncio.create_task(query_items(p))
    await held.wait_reached()
    unreadable = statement + " -- set v"
    await ok(p, request("ExecuteStatement", Statement=unreadable, Parameters=[s("new"), s("1")]))
    held.release()
    assert await reading == ([item("1", "old")], "miss")
    assert await query_items(p) == ([item("1", "new")], "miss")


# The cache's own bookkeeping (core/cache.py) ---------------------------------------------


def test_past_the_remembered_drops_the_dropped_tables_entries_are_freed_and_others_kept() -> None:
    """``_free_dropped``: when more tables were dropped than the cache remembers, it frees
    every dead entry at once and keeps every live one."""
    c = ItemCache(10_000_000, None, lambda: 0.0)
    c.drop_all()  # generation 1: live entries are stamped 1, as is the last clearing
    keep = ("keep", "1", None)
    c.put(keep, b"kept")
    for n in range(MAX_DROPPED_TABLES + 1):
        c.put((f"gone-{n}", "1", None), b"gone")
    for n in range(MAX_DROPPED_TABLES + 1):
        c.drop_table(f"gone-{n}")
    assert len(c) == 1 and c.bytes == entry_size(keep, b"kept")  # freed, not just dead
    assert c.stats.evicted[Eviction.TABLE] == MAX_DROPPED_TABLES + 1
    assert c.get(keep) == b"kept"


# Table changes and PartiQL writes whose answer was lost ------------------------------------


async def cached_page(p: Proxy, items: list[dict[str, Any]]) -> None:
    assert await query_items(p) == (items, "miss")
    assert await query_items(p) == (items, "hit")


async def not_stored(p: Proxy, value: dict[str, Any]) -> None:
    """Key 1 and the query page are read upstream twice: nothing is stored for them."""
    for _ in range(2):
        assert await get(p) == (value, "miss")
        assert await query_items(p) == ([value], "miss")


async def test_a_table_change_whose_answer_was_lost_holds_the_tables_items_and_pages() -> None:
    """UpdateTable timed out (service/item_writes.py ``table_change``, ``unsure``): it may
    still change the table, so nothing of it is stored until it can no longer."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("UpdateTable", timeout=True).release()
    answer = await p.handle(request("UpdateTable", TableName="t", BillingMode="PAY_PER_REQUEST"))
    assert answer.status == 500
    await not_stored(p, item("1", "old"))


async def test_a_partiql_write_answered_with_a_500_holds_its_tables_items_and_pages() -> None:
    """A PartiQL write with a 5xx (service/item_writes.py ``_unread``): it may have
    happened, and may yet."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("ExecuteStatement", status=500).release()
    statement = 'UPDATE "t" SET "v" = ? WHERE "pk" = ?'
    answer = await p.handle(
        request("ExecuteStatement", Statement=statement, Parameters=[s("new"), s("1")])
    )
    assert answer.status == 500
    await not_stored(p, item("1", "new"))


async def test_an_unreadable_write_that_timed_out_holds_every_tables_items_and_pages() -> None:
    """A PartiQL write the proxy cannot read, with no answer (``_drop(None, unsure=True)``):
    every table's items and pages are dropped and held."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("ExecuteStatement", timeout=True, applied=False).release()
    statement = 'UPDATE "t" SET "v" = ? WHERE "pk" = ? -- set v'
    answer = await p.handle(
        request("ExecuteStatement", Statement=statement, Parameters=[s("new"), s("1")])
    )
    assert answer.status == 500
    await not_stored(p, item("1", "old"))
    fake.put_direct("t", item("1", "new"))  # the lost write lands
    assert await get(p) == (item("1", "new"), "miss")
    assert await query_items(p) == ([item("1", "new")], "miss")


# BatchGetItem's answer: consistent tables beside cached ones, capacity, waits -------------


T_ARN = FakeTable("t").arn


class CapacityDynamoDB(HeldDynamoDB):
    """HeldDynamoDB that reports ConsumedCapacity when asked, as DynamoDB does: for a
    BatchGetItem half a unit per key sent, per table, by the table's name (``by_spelling``:
    by the name or ARN the request used); for a GetItem or a Query half a unit. It also answers an
    UpdateItem's ReturnValues ALL_OLD with the item as it was."""

    def __init__(self, *tables: FakeTable, by_spelling: bool = False) -> None:
        super().__init__(*tables)
        self.by_spelling = by_spelling

    async def send(self, target: Any, body: bytes, headers: Any, *, retry_safe: bool) -> Any:
        answer = await super().send(target, body, headers, retry_safe=retry_safe)
        payload = orjson.loads(body)
        asked = payload.get("ReturnConsumedCapacity", "NONE")
        if answer.status != 200 or asked not in ("TOTAL", "INDEXES"):
            return answer
        result = orjson.loads(answer.body)
        if target.operation in ("Query", "GetItem"):
            result["ConsumedCapacity"] = {"TableName": "t", "CapacityUnits": 0.5}
            return type(answer)(answer.status, answer.headers, orjson.dumps(result))
        if target.operation != "BatchGetItem":
            return answer
        result["ConsumedCapacity"] = [
            {
                "TableName": table if self.by_spelling else table.rsplit(":table/", 1)[-1],
                "CapacityUnits": 0.5 * len(read["Keys"]),
            }
            for table, read in payload["RequestItems"].items()
        ]
        return type(answer)(answer.status, answer.headers, orjson.dumps(result))

    def _answer(self, operation: str, payload: dict[str, Any], held: Any) -> dict[str, Any]:
        if operation == "UpdateItem" and payload.get("ReturnValues") == "ALL_OLD":
            table = self._table(payload.get("TableName"))
            old = table.items.get(self._key(table, payload["Key"]))
            self._update(table, payload)
            return {} if old is None else {"Attributes": old}
        return super()._answer(operation, payload, held)


def request_id(answer: WireResponse) -> str:
    return dict(answer.headers)["x-amzn-RequestId"]


def last_sent(fake: HeldDynamoDB, operation: str) -> Any:
    return orjson.loads([x for x in fake.sent if x.target.operation == operation][-1].body)


def keys(*pks: str) -> list[dict[str, Any]]:
    return [{"pk": s(pk)} for pk in pks]


def two_tables(*, by_spelling: bool = False) -> CapacityDynamoDB:
    fake = CapacityDynamoDB(FakeTable("c"), FakeTable("t"), by_spelling=by_spelling)
    for table, pk, v in (("t", "1", "one"), ("t", "2", "two"), ("c", "c1", "x"), ("c", "c2", "y")):
        fake.put_direct(table, item(pk, v))
    return fake


async def test_a_batch_get_reads_a_consistent_table_upstream_as_asked_beside_the_cache() -> None:
    """The pass-through tables of a batch (``_batch_plan``, ``_merge``, ``_body``): a
    ConsistentRead table goes upstream exactly as the client sent it, its items and its
    UnprocessedKeys (with the table's other members) come back, beside a cached table's hit
    and miss; ReturnConsumedCapacity is forwarded and DynamoDB's figures reported per table
    (a table spelled by ARN is reported by name); the answer mixes hits, so its request id
    is the proxy's own."""
    fake = two_tables()
    p = proxy(fake)
    await cached(p, item("1", "one"))
    consistent = {"Keys": keys("c1", "c2"), "ConsistentRead": True}
    fake.hold("BatchGetItem", unprocessed=tuple(keys("c2"))).release()
    answer = await p.handle(
        request(
            "BatchGetItem",
            RequestItems={"c": consistent, T_ARN: {"Keys": keys("1", "2")}},
            ReturnConsumedCapacity="TOTAL",
        )
    )
    assert answer.status == 200, answer.body
    assert cache_of(answer) == "miss"
    body = orjson.loads(answer.body)
    assert body["Responses"]["c"] == [item("c1", "x")]
    assert sorted(body["Responses"][T_ARN], key=str) == [item("1", "one"), item("2", "two")]
    assert body["UnprocessedKeys"] == {"c": {"Keys": keys("c2"), "ConsistentRead": True}}
    assert body["ConsumedCapacity"] == [
        {"TableName": "c", "CapacityUnits": 1.0},
        {"TableName": "t", "CapacityUnits": 0.5},
    ]
    assert last_sent(fake, "BatchGetItem") == {
        "RequestItems": {"c": consistent, T_ARN: {"Keys": keys("2")}},
        "ReturnConsumedCapacity": "TOTAL",
    }
    assert request_id(answer) != "FAKE"
    fake.hold("BatchGetItem").release()  # a consistent table none of whose keys exist
    absent = {"c": {"Keys": keys("c9"), "ConsistentRead": True}}
    answer = await p.handle(request("BatchGetItem", RequestItems=absent))
    # Every table consistent: nothing to serve from the cache, DynamoDB's answer relayed.
    assert cache_of(answer) == "bypass"
    assert orjson.loads(answer.body)["Responses"].get("c", []) == []
    assert orjson.loads(answer.body)["UnprocessedKeys"] == {}


async def test_a_batch_get_reports_capacity_under_the_spelling_dynamodb_reported() -> None:
    """``_body``'s ``reported.get(table)``: an upstream that reports ConsumedCapacity under
    the ARN the request used has its figure passed on, not a zero."""
    fake = two_tables(by_spelling=True)
    p = proxy(fake)
    answer = await p.handle(
        request(
            "BatchGetItem",
            RequestItems={T_ARN: {"Keys": keys("1")}},
            ReturnConsumedCapacity="TOTAL",
        )
    )
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body)["ConsumedCapacity"] == [
        {"TableName": T_ARN, "CapacityUnits": 0.5}
    ]


async def test_a_batch_get_answered_from_the_cache_alone_reports_zero_capacity_per_table() -> None:
    """A batch of hits only (``run``, ``_body``, ``_keep``): no upstream call, each table's
    projection applied to the cached items, zero capacity in the shape asked (INDEXES)."""
    fake = two_tables()
    p = proxy(fake)
    await cached(p, item("1", "one"))
    assert await get(p, "9") == (None, "miss")
    answer = await p.handle(
        request(
            "BatchGetItem",
            RequestItems={"t": {"Keys": keys("1", "9"), "ProjectionExpression": "pk"}},
            ReturnConsumedCapacity="INDEXES",
        )
    )
    assert answer.status == 200, answer.body
    assert cache_of(answer) == "hit"
    assert orjson.loads(answer.body) == {
        "Responses": {"t": [{"pk": s("1")}]},
        "UnprocessedKeys": {},
        "ConsumedCapacity": [
            {"TableName": "t", "CapacityUnits": 0.0, "Table": {"CapacityUnits": 0.0}}
        ],
    }
    assert fake.count("BatchGetItem") == 0


async def test_a_batch_get_of_misses_only_carries_dynamodbs_answer_and_request_id() -> None:
    """A batch whose keys all went upstream (``run``, ``_merge``, ``_body``): the upstream's
    request id, no ConsumedCapacity unless asked, the projection applied to fetched items,
    and a table none of whose keys exist (DynamoDB leaves it out of Responses) answered
    empty and cached as "no such item"."""
    fake = two_tables()
    p = proxy(fake)
    answer = await p.handle(
        request(
            "BatchGetItem", RequestItems={"t": {"Keys": keys("2"), "ProjectionExpression": "v"}}
        )
    )
    assert answer.status == 200, answer.body
    assert request_id(answer) == "FAKE"
    assert orjson.loads(answer.body) == {
        "Responses": {"t": [{"v": s("two")}]},
        "UnprocessedKeys": {},
    }
    answer = await p.handle(request("BatchGetItem", RequestItems={"t": {"Keys": keys("8", "9")}}))
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {"Responses": {"t": []}, "UnprocessedKeys": {}}
    assert await get(p, "9") == (None, "hit")
    assert await get(p, "2") == (item("2", "two"), "hit")


async def test_a_batch_get_that_waited_on_a_failed_fill_returns_its_key_unprocessed() -> None:
    """``_join_waits``: a batch key that joined another request's fill, which got no item
    (a 500), goes back to the client as UnprocessedKeys, under its table."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    await get(p, "2")  # the proxy learns the table
    held = fake.hold("GetItem", status=500)
    reading = asyncio.create_task(p.handle(request("GetItem", TableName="t", Key={"pk": s("1")})))
    await held.wait_reached()
    batching = asyncio.create_task(
        p.handle(request("BatchGetItem", RequestItems={"t": {"Keys": keys("1")}}))
    )
    for _ in range(50):  # let the batch plan its key onto the fill in flight
        await asyncio.sleep(0)
    held.release()
    async with asyncio.timeout(5):
        answer = await batching
        assert (await reading).status == 500
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {
        "Responses": {"t": []},
        "UnprocessedKeys": {"t": {"Keys": keys("1")}},
    }
    assert fake.count("BatchGetItem") == 0  # it did join the fill


async def test_a_batch_get_naming_one_key_twice_goes_to_dynamodb_as_sent() -> None:
    """``_batch_plan``'s duplicate check across spellings of a table: DynamoDB rejects the
    request, so it is forwarded unchanged (not planned, fetched and cached)."""
    fake = two_tables()
    p = proxy(fake)
    await get(p, "2")
    items = {"t": {"Keys": keys("1")}, T_ARN: {"Keys": keys("1")}}
    answer = await p.handle(request("BatchGetItem", RequestItems=items))
    assert cache_of(answer) == "bypass"
    assert last_sent(fake, "BatchGetItem") == {"RequestItems": items}
    assert await get(p) == (item("1", "one"), "miss")


# Stale-on-error for batches ------------------------------------------------------------


async def expired(p: Proxy) -> None:
    """Key 1 cached, then past its TTL of 1 ms (still within the stale grace)."""
    assert await get(p) == (item("1", "one"), "miss")
    await asyncio.sleep(0.005)


async def test_a_batch_get_with_a_consistent_table_is_never_served_stale() -> None:
    """``_BatchPlan._stale``'s ``self.passthrough``: a consistent read has no stale
    fallback, so the batch gets DynamoDB's 500; without the consistent table the same batch
    is served stale, with zero capacity per table."""
    fake = two_tables()
    p = proxy(fake, record_ttl_millis=1, stale_grace_millis=60_000)
    await expired(p)
    fake.hold("BatchGetItem", status=500).release()
    with_consistent = {"c": {"Keys": keys("c1"), "ConsistentRead": True}, "t": {"Keys": keys("1")}}
    answer = await p.handle(request("BatchGetItem", RequestItems=with_consistent))
    assert answer.status == 500
    fake.hold("BatchGetItem", status=500).release()
    answer = await p.handle(
        request(
            "BatchGetItem", RequestItems={"t": {"Keys": keys("1")}}, ReturnConsumedCapacity="TOTAL"
        )
    )
    assert answer.status == 200, answer.body
    assert cache_of(answer) == "stale"
    assert orjson.loads(answer.body) == {
        "Responses": {"t": [item("1", "one")]},
        "UnprocessedKeys": {},
        "ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 0.0}],
    }


async def test_a_batch_get_answered_with_a_client_error_is_relayed_not_served_stale() -> None:
    """``run``'s ``upstream_failed``: a 4xx is DynamoDB's answer to the request, relayed as
    it came (labelled a miss), even where a stale entry exists."""
    fake = two_tables()
    p = proxy(fake, record_ttl_millis=1, stale_grace_millis=60_000)
    await expired(p)
    fake.hold("BatchGetItem", status=400, applied=False).release()
    answer = await p.handle(request("BatchGetItem", RequestItems={"t": {"Keys": keys("1")}}))
    assert answer.status == 400
    assert cache_of(answer) == "miss"
    assert orjson.loads(answer.body)["__type"].endswith("#InternalServerError")


# PartiQL and table changes: what they drop, and what they must not ------------------------


def statement(text: str, *parameters: dict[str, str]) -> ClientRequest:
    return request("ExecuteStatement", Statement=text, Parameters=list(parameters))


UPDATE_T = 'UPDATE "t" SET "v" = ? WHERE "pk" = ?'


async def test_a_select_statement_is_relayed_and_drops_nothing() -> None:
    """``statement``: a read-only PartiQL request is forwarded and its answer relayed; it
    writes nothing, so the cached items and pages stay."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("ExecuteStatement", applied=False).release()  # answers 200 {}
    answer = await p.handle(statement('SELECT * FROM "t" WHERE "pk" = ?', s("1")))
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {}
    assert request_id(answer) == "FAKE"
    assert await get(p) == (item("1", "old"), "hit")
    assert await query_items(p) == ([item("1", "old")], "hit")


def two_item_tables() -> HeldDynamoDB:
    fake = HeldDynamoDB(FakeTable("t"), FakeTable("u"))
    fake.put_direct("t", item("1", "old"))
    fake.put_direct("u", item("1", "u"))
    return fake


async def u_cached(p: Proxy, outcome: str) -> None:
    """Key 1 of table u and its query page, read with this outcome."""
    answer = await p.handle(request("GetItem", TableName="u", Key={"pk": s("1")}))
    assert (orjson.loads(answer.body)["Item"], cache_of(answer)) == (item("1", "u"), outcome)
    page = request(
        "Query",
        TableName="u",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("1")},
    )
    answer = await p.handle(page)
    assert (orjson.loads(answer.body)["Items"], cache_of(answer)) == ([item("1", "u")], outcome)


async def test_a_partiql_write_drops_and_holds_only_the_tables_it_names() -> None:
    """``statement``/``_unread``/``_drop`` with the tables known: a PartiQL write to t,
    answered or not, leaves table u's items and pages cached."""
    fake = two_item_tables()
    p = proxy(fake)
    await u_cached(p, "miss")
    await u_cached(p, "hit")
    await cached(p, item("1", "old"))
    await ok(p, statement(UPDATE_T, s("new"), s("1")))
    assert await get(p) == (item("1", "new"), "miss")
    await u_cached(p, "hit")
    fake.hold("ExecuteStatement", status=500).release()
    assert (await p.handle(statement(UPDATE_T, s("newer"), s("1")))).status == 500
    assert await get(p) == (item("1", "newer"), "miss")
    await u_cached(p, "hit")


async def test_a_partiql_write_refused_by_dynamodb_drops_nothing() -> None:
    """``_unread``'s ``answer.status < 400``: a client error wrote nothing."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("ExecuteStatement", status=400, applied=False).release()
    assert (await p.handle(statement(UPDATE_T, s("new"), s("1")))).status == 400
    assert await get(p) == (item("1", "old"), "hit")
    assert await query_items(p) == ([item("1", "old")], "hit")


async def test_a_table_change_refused_by_dynamodb_forgets_nothing() -> None:
    """``table_change``'s ``not 400 <= status < 500``: a client error changed nothing."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("UpdateTable", status=400, applied=False).release()
    answer = await p.handle(request("UpdateTable", TableName="t", BillingMode="PAY_PER_REQUEST"))
    assert answer.status == 400
    assert await get(p) == (item("1", "old"), "hit")
    assert await query_items(p) == ([item("1", "old")], "hit")


async def test_a_table_change_answered_with_a_500_holds_the_tables_items_and_pages() -> None:
    """``table_change`` with a 500 (the boundary of ``< 500`` and ``>= 500``): it may have
    happened and may yet, so nothing of the table is stored until it can no longer."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await cached_page(p, [item("1", "old")])
    fake.hold("UpdateTable", status=500).release()
    answer = await p.handle(request("UpdateTable", TableName="t", BillingMode="PAY_PER_REQUEST"))
    assert answer.status == 500
    await not_stored(p, item("1", "old"))


async def test_a_write_whose_key_cannot_be_read_answered_with_a_500_holds_its_table() -> None:
    """``_unsure``'s unknown tables: a PutItem whose item lacks the key attribute (the
    proxy cannot key it) got a 500; its table is held whole, so nothing of it is stored."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.hold("PutItem", status=500, applied=False).release()
    answer = await p.handle(request("PutItem", TableName="t", Item={"v": s("new")}))
    assert answer.status == 500
    assert await get(p) == (item("1", "old"), "miss")
    assert await get(p) == (item("1", "old"), "miss")


# Item writes: what DynamoDB is sent and what the cache keeps ------------------------------


async def test_an_update_asking_for_the_old_item_gets_it_and_the_cache_keeps_the_new() -> None:
    """``_send``'s ``asked`` and ``_apply``'s ``asked in _UPDATE_RETURNS_NEW``: an UpdateItem
    with ReturnValues ALL_OLD goes upstream as asked, its answer (the old item) reaches the
    client, and is not stored as the key's item."""
    fake = CapacityDynamoDB(FakeTable("t"))
    fake.put_direct("t", item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    answer = await p.handle(update("1", "new", ReturnValues="ALL_OLD"))
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {"Attributes": item("1", "old")}
    assert last_sent(fake, "UpdateItem")["ReturnValues"] == "ALL_OLD"
    assert (await get(p))[0] == item("1", "new")


async def test_a_put_goes_upstream_as_the_client_sent_it() -> None:
    """``_send``: only an UpdateItem is asked for ALL_NEW; DynamoDB refuses ReturnValues
    ALL_NEW on a PutItem."""
    fake = fake_with()
    p = proxy(fake)
    await ok(p, put("1", "a"))
    assert last_sent(fake, "PutItem") == {"TableName": "t", "Item": item("1", "a")}


async def test_a_write_the_proxy_cannot_read_key_by_key_is_relayed_and_drops_every_table() -> None:
    """``write``'s Uncacheable branch (``_unread(call, None)``): an UpdateItem whose
    ReturnValues is not a name is DynamoDB's to judge; here it takes it, so every table's
    items are dropped."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await ok(p, update("1", "new", ReturnValues=5))
    assert await get(p) == (item("1", "new"), "miss")


async def test_a_write_whose_key_the_proxy_cannot_read_drops_its_table() -> None:
    """``_drop_tables`` of ``_apply``: DynamoDB took a PutItem whose item the proxy could
    not key (here it lacks the key attribute, so a lenient upstream); the table's items are
    dropped."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.hold("PutItem", applied=False).release()  # answers 200 {}
    await ok(p, request("PutItem", TableName="t", Item={"v": s("new")}))
    fake.put_direct("t", item("1", "new"))
    assert await get(p) == (item("1", "new"), "miss")


async def test_a_write_to_a_table_the_proxy_cannot_describe_is_answered_as_dynamodb_did() -> None:
    """``_keys``: a table DescribeTable cannot describe is dropped whole, and the other
    tables of the batch are still followed key by key; an UpdateItem there gets
    DynamoDB's answer (no key to store its ALL_NEW item under)."""
    fake = HeldDynamoDB(FakeTable("x"), FakeTable("t"))
    fake.put_direct("t", item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.hold("DescribeTable", status=500, applied=False).release()  # x: not described
    writes = {
        "x": [{"PutRequest": {"Item": item("9", "x")}}],
        "t": [{"PutRequest": {"Item": item("1", "new")}}],
    }
    answer = await p.handle(request("BatchWriteItem", RequestItems=writes))
    assert answer.status == 200, answer.body
    assert await get(p) == (item("1", "new"), "hit")  # followed: stored as written
    fake.hold("DescribeTable", status=500, applied=False).release()
    answer = await p.handle(
        request(
            "UpdateItem",
            TableName="x",
            Key={"pk": s("9")},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": s("y")},
        )
    )
    assert answer.status == 200, answer.body
    assert fake.item("x", pk="9") == item("9", "y")


async def test_unprocessed_items_of_a_table_forgotten_meanwhile_do_not_hide_the_others() -> None:
    """``_unprocessed``: when DynamoDB leaves items of two tables unprocessed and the first
    table was deleted while the batch was on its way, the second table's unprocessed item
    is still recognised as not written, and the cache keeps what it held."""
    fake = HeldDynamoDB(FakeTable("x"), FakeTable("t"))
    fake.put_direct("t", item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    x_put = {"PutRequest": {"Item": item("9", "x")}}
    t_put = {"PutRequest": {"Item": item("1", "new")}}
    held = fake.hold("BatchWriteItem", unprocessed=(x_put, t_put))
    writing = asyncio.create_task(
        p.handle(request("BatchWriteItem", RequestItems={"x": [x_put], "t": [t_put]}))
    )
    await held.wait_reached()
    await ok(p, request("DeleteTable", TableName="x"))
    held.release()
    async with asyncio.timeout(5):
        answer = await writing
    assert answer.status == 200, answer.body
    assert await get(p) == (item("1", "old"), "hit")


async def test_a_write_of_an_item_too_deep_to_encode_evicts_its_key() -> None:
    """``_put``: an item nested deeper than the proxy can encode (only a lenient upstream
    takes it) is not stored, and what the cache held for its key is evicted."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    deep: dict[str, Any] = {"S": "bottom"}
    for _ in range(150):  # 300 levels: past orjson's 255 for writing, within its reading
        deep = {"M": {"a": deep}}
    body = json.dumps({"TableName": "t", "Item": {"pk": s("1"), "v": deep}}).encode()
    target = "DynamoDB_20120810.PutItem"
    fake.hold("PutItem", applied=False).release()
    await ok(p, ClientRequest((("X-Amz-Target", target),), body, target))
    fake.put_direct("t", item("1", "new"))  # what DynamoDB now holds, readable by the fake
    assert await get(p) == (item("1", "new"), "miss")


def test_a_hold_ending_leaves_a_later_hold_in_force() -> None:
    """``_is_held`` frees expired holds from the oldest: one ending must not free a later
    one whose write may still land."""
    now = [0.0]
    c = ItemCache(10_000_000, None, lambda: now[0])
    first, second = ("t", "1", None), ("t", "2", None)
    c.hold([first], 1.0)
    now[0] = 0.5
    c.hold([second], 1.0)
    now[0] = 1.2
    assert c.put(first, b"one")
    assert not c.put(second, b"two")
    assert c.get(second) is None


# Query pages: what a miss stores and what it relays -------------------------------------


async def test_a_query_the_cache_cannot_key_is_relayed_as_a_bypass() -> None:
    """``read``'s Uncacheable branch: a consistent Query goes upstream and comes back as
    DynamoDB answered, labelled a bypass."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    consistent = request(
        "Query",
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("1")},
        ConsistentRead=True,
    )
    answer = await p.handle(consistent)
    assert answer.status == 200, answer.body
    assert cache_of(answer) == "bypass"
    assert orjson.loads(answer.body)["Items"] == [item("1", "one")]
    assert request_id(answer) == "FAKE"


async def test_a_query_on_a_table_dynamodb_cannot_describe_is_relayed_as_a_bypass() -> None:
    """``read``'s ``info is None``: DynamoDB's own error for a missing table."""
    p = proxy(fake_with())
    answer = await p.handle(
        request(
            "Query",
            TableName="nope",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": s("1")},
        )
    )
    assert answer.status == 400
    assert cache_of(answer) == "bypass"
    assert orjson.loads(answer.body)["__type"].endswith("#ResourceNotFoundException")


async def test_a_query_answered_with_an_error_is_relayed_and_not_stored() -> None:
    """``read``: only a 200 page is stored; a 4xx and a 5xx reach the client as DynamoDB
    sent them (labelled a miss), and the next Query goes upstream."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    for status in (400, 500):
        fake.hold("Query", status=status, applied=False).release()
        answer = await p.handle(query())
        assert answer.status == status
        assert cache_of(answer) == "miss"
        assert orjson.loads(answer.body)["__type"].endswith("#InternalServerError")
    assert await query_items(p) == ([item("1", "one")], "miss")


async def test_a_query_page_reports_dynamodbs_capacity_then_zero_when_served_from_memory() -> None:
    """``read``'s capacity: the miss passes on what DynamoDB consumed; the stored page, and
    so every hit, reports zero units."""
    fake = CapacityDynamoDB(FakeTable("t"))
    fake.put_direct("t", item("1", "one"))
    p = proxy(fake)
    asking = request(
        "Query",
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("1")},
        ReturnConsumedCapacity="TOTAL",
    )
    for outcome, units in (("miss", 0.5), ("hit", 0.0)):
        answer = await p.handle(asking)
        assert answer.status == 200, answer.body
        assert cache_of(answer) == outcome
        body = orjson.loads(answer.body)
        assert body["ConsumedCapacity"] == {"TableName": "t", "CapacityUnits": units}
        assert body["Items"] == [item("1", "one")]


async def test_a_get_item_that_starts_while_a_write_to_its_key_is_in_flight_is_not_stored() -> None:
    """``WriteTracker.fill_started``'s ``clean = key not in self._writes`` (core/cache.py):
    a miss that starts while a write to its key is on its way may read the item from
    before the write. It is answered (the write is not answered yet, so that is a fair
    answer) but not stored: the next read goes upstream again. Once the write is answered,
    the cache holds what it wrote. (Without the check the end of the write still replaces
    the entry, so only the outcome of the reads in between shows it.)"""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await get(p, "2")  # the proxy learns the table
    held = fake.hold("PutItem", late=True)
    writing = asyncio.create_task(ok(p, put("1", "new")))
    await held.wait_reached()  # on its way: DynamoDB still holds "old"
    async with asyncio.timeout(5):
        assert await get(p) == (item("1", "old"), "miss")
        assert await get(p) == (item("1", "old"), "miss")  # not stored
    assert fake.count("GetItem") == 3
    held.release()
    await writing
    assert await get(p) == (item("1", "new"), "hit")


async def test_after_a_table_change_or_an_invalidation_its_pages_are_stored_again() -> None:
    """``QueryCache.dropped`` and ``drop_all`` hold nothing unless told the change is
    unsure: after an answered UpdateTable (the registry's listener) and after the admin's
    invalidation of everything, the next page is stored at once."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    await cached_page(p, [item("1", "one")])
    await ok(p, request("UpdateTable", TableName="t", BillingMode="PAY_PER_REQUEST"))
    await cached_page(p, [item("1", "one")])
    assert p.admin is not None
    await p.admin.invalidate({"all": True})
    await cached_page(p, [item("1", "one")])


async def test_an_update_answers_with_the_return_values_the_client_asked_for() -> None:
    """``_send``: the proxy asks DynamoDB for ALL_NEW when the client asked for NONE or
    ALL_NEW; the client gets no Attributes for NONE (with DynamoDB's request id), the new
    item for ALL_NEW, and a refusal as DynamoDB sent it."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    answer = await p.handle(update("1", "a"))
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {}
    assert request_id(answer) == "FAKE"
    assert last_sent(fake, "UpdateItem")["ReturnValues"] == "ALL_NEW"
    answer = await p.handle(update("1", "b", ReturnValues="ALL_NEW"))
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {"Attributes": item("1", "b")}
    for asked in ({}, {"ReturnValues": "ALL_NEW"}):
        fake.hold("UpdateItem", status=400, applied=False).release()
        answer = await p.handle(update("1", "c", **asked))
        assert answer.status == 400
        assert orjson.loads(answer.body)["__type"].endswith("#InternalServerError")
    assert await get(p) == (item("1", "b"), "hit")


async def test_an_update_too_deep_to_rewrite_goes_upstream_as_it_came() -> None:
    """``_send``'s JSONEncodeError branch: an UpdateItem the proxy cannot re-encode with
    ReturnValues ALL_NEW is forwarded unchanged and DynamoDB's answer relayed; the key is
    evicted."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    deep: dict[str, Any] = {"S": "bottom"}
    for _ in range(150):  # 300 levels: past orjson's 255 for writing, within its reading
        deep = {"M": {"a": deep}}
    payload = {
        "TableName": "t",
        "Key": {"pk": s("1")},
        "UpdateExpression": "SET v = :v",
        "ExpressionAttributeValues": {":v": deep},
    }
    body = json.dumps(payload).encode()
    target = "DynamoDB_20120810.UpdateItem"
    answer = await p.handle(ClientRequest((("X-Amz-Target", target),), body, target))
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body) == {}
    assert [x.body for x in fake.sent if x.target.operation == "UpdateItem"] == [body]
    fake.put_direct("t", item("1", "new"))
    assert await get(p) == (item("1", "new"), "miss")


async def test_a_get_item_miss_forwards_return_consumed_capacity() -> None:
    """``_get_item_miss``/``_get_item_answer``: the fill asks DynamoDB for the capacity the
    client asked for and passes DynamoDB's figure on; the hit then reports zero; not asked,
    none is reported."""
    fake = CapacityDynamoDB(FakeTable("t"))
    fake.put_direct("t", item("1", "one"))
    p = proxy(fake)
    for outcome in ("miss", "hit"):  # not asked: none reported, the miss with DynamoDB's id
        answer = await p.handle(request("GetItem", TableName="t", Key={"pk": s("2")}))
        assert (answer.status, cache_of(answer), orjson.loads(answer.body)) == (200, outcome, {})
        assert (request_id(answer) == "FAKE") is (outcome == "miss")
    asking = request("GetItem", TableName="t", Key={"pk": s("1")}, ReturnConsumedCapacity="TOTAL")
    for outcome, units in (("miss", 0.5), ("hit", 0.0)):
        answer = await p.handle(asking)
        assert answer.status == 200, answer.body
        assert cache_of(answer) == outcome
        assert orjson.loads(answer.body) == {
            "Item": item("1", "one"),
            "ConsumedCapacity": {"TableName": "t", "CapacityUnits": units},
        }


async def joined(fake: HeldDynamoDB, p: Proxy, status: int | None) -> tuple[WireResponse, Any]:
    """A GetItem of key 1 that joins another one's fill, answered ``status`` (None: 200)."""
    await get(p, "2")  # the proxy learns the table
    held = fake.hold("GetItem") if status is None else fake.hold("GetItem", status=status)
    first = asyncio.create_task(p.handle(request("GetItem", TableName="t", Key={"pk": s("1")})))
    await held.wait_reached()
    second = asyncio.create_task(p.handle(request("GetItem", TableName="t", Key={"pk": s("1")})))
    for _ in range(50):  # let the second plan its key onto the fill in flight
        await asyncio.sleep(0)
    held.release()
    async with asyncio.timeout(5):
        return await second, await first


async def test_a_get_item_that_joined_a_fill_gets_its_item_as_asked() -> None:
    """``_get_item_fill``: a miss sharing another's fill answers with the item, labelled a
    miss, and without the ConsumedCapacity it did not ask for."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    answer, first = await joined(fake, p, None)
    assert first.status == 200
    assert answer.status == 200, answer.body
    assert cache_of(answer) == "miss"
    assert orjson.loads(answer.body) == {"Item": item("1", "one")}
    assert fake.count("GetItem") == 2  # key 2, then one read of key 1 for both


async def test_a_get_item_that_joined_a_failed_fill_reads_for_itself() -> None:
    """``_get_item_fill``'s ``value is None``: the fill it shared got a 500, so it sends
    its own request and relays DynamoDB's answer, labelled a bypass."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    answer, first = await joined(fake, p, 500)
    assert first.status == 500
    assert answer.status == 200, answer.body
    assert cache_of(answer) == "bypass"
    assert orjson.loads(answer.body) == {"Item": item("1", "one")}
    assert request_id(answer) == "FAKE"


async def test_a_page_stored_at_the_instant_of_a_write_is_not_served_stale() -> None:
    """``QueryCache._stale``'s ``written_at >= stored_at``: a page stored at the same
    clock reading as a write to its table began may predate the write, so when the
    upstream fails it is not served stale (a page stored after the write is). The clock
    is the cache's own, so the tie is exact."""
    now = [100.0]
    fake = fake_with(item("1", "one"))
    cache = ItemCache(1_000_000, 1.0, lambda: now[0], stale_grace=60.0)
    queries = QueryCache(fake, cache, TableRegistry(fake), strict=False)
    page = orjson.dumps(
        {
            "TableName": "t",
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": s("1")},
        }
    )
    target = parse_target("DynamoDB_20120810.Query")
    call = Call(target, operations.lookup(target), orjson.loads(page), page, ())

    async def read_when_the_upstream_fails() -> WireResponse:
        now[0] += 1.5  # past the TTL, within the grace
        fake.hold("Query", status=500).release()
        return await queries.read(call)

    assert cache_of(await queries.read(call)) == "miss"  # stored at 100.0
    now[0] = 100.25
    queries.table_written("t")
    now[0] = 101.25
    assert cache_of(await queries.read(call)) == "miss"  # stored at 101.25: after the write
    answer = await read_when_the_upstream_fails()  # at 102.75
    assert (answer.status, cache_of(answer)) == (200, "stale")
    assert cache_of(await queries.read(call)) == "miss"  # stored at 102.75
    queries.table_written("t")  # at 102.75 too
    assert (await read_when_the_upstream_fails()).status == 500


async def test_a_projected_get_item_is_served_from_the_cache() -> None:
    """``_resolve``'s index-key check bypasses only a projection into an index key: a plain
    projection is a miss, then a hit, with the projection applied; a consistent read is
    DynamoDB's answer, labelled a bypass."""
    fake = fake_with(item("1", "one"))
    p = proxy(fake)
    projected = request("GetItem", TableName="t", Key={"pk": s("1")}, ProjectionExpression="v")
    for outcome in ("miss", "hit"):
        answer = await p.handle(projected)
        assert (cache_of(answer), orjson.loads(answer.body)) == (outcome, {"Item": {"v": s("one")}})
    fake.put_direct("t", {"pk": s("2"), "m": {"M": {"a": s("x"), "b": s("y")}}})
    nested = request("GetItem", TableName="t", Key={"pk": s("2")}, ProjectionExpression="m.a")
    for outcome in ("miss", "hit"):  # a path into a map that is not an index key
        answer = await p.handle(nested)
        assert (cache_of(answer), orjson.loads(answer.body)) == (
            outcome,
            {"Item": {"m": {"M": {"a": s("x")}}}},
        )
    consistent = request("GetItem", TableName="t", Key={"pk": s("1")}, ConsistentRead=True)
    answer = await p.handle(consistent)
    assert (cache_of(answer), request_id(answer)) == ("bypass", "FAKE")


async def test_a_write_of_an_item_larger_than_the_cache_evicts_what_it_held() -> None:
    """``put``'s oversize refusal evicts the key (core/cache.py): the item written does not
    fit the budget, and the smaller one cached before it is no longer true."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake, item_cache_max_bytes=2_000)
    await cached(p, item("1", "old"))
    large = item("1", "x" * 3_000)
    await ok(p, request("PutItem", TableName="t", Item=large))
    assert await get(p) == (large, "miss")


def test_the_budget_charges_the_range_key_and_holds_an_entry_of_exactly_its_size() -> None:
    """``_charged`` counts the range key's bytes, and ``put`` keeps an entry whose charge is
    exactly the budget (the bound is on memory: it must neither under-count nor refuse
    what fits)."""
    key = ("t", "ab", "cde")
    assert entry_size(key, b"xy") == ENTRY_OVERHEAD + 2 + 3 + 2
    c = ItemCache(entry_size(key, b"xy"), None, lambda: 0.0)
    assert c.put(key, b"xy")
    assert c.get(key) == b"xy" and c.bytes == c.max_bytes
    assert not c.put(key, b"xyz")
    assert c.get(key) is None and c.bytes == 0


async def test_a_get_item_served_stale_has_the_shape_the_client_asked_for() -> None:
    """``get_item``'s stale fallback answers as a hit would: the item, and no
    ConsumedCapacity when none was asked for."""
    fake = two_tables()
    p = proxy(fake, record_ttl_millis=1, stale_grace_millis=60_000)
    await expired(p)
    fake.hold("GetItem", status=500).release()
    answer = await p.handle(request("GetItem", TableName="t", Key={"pk": s("1")}))
    assert (answer.status, cache_of(answer)) == (200, "stale")
    assert orjson.loads(answer.body) == {"Item": item("1", "one")}


async def test_a_batch_write_with_a_key_that_no_longer_fits_follows_its_other_tables() -> None:
    """``_keys``: a table recreated outside with another key makes its written item
    unreadable to the proxy (that table is dropped whole); the batch's other tables are
    still followed key by key, so their new items are what the cache holds."""
    fake = HeldDynamoDB(FakeTable("u"), FakeTable("t"))
    fake.put_direct("t", item("1", "old"))
    p = proxy(fake)
    await u_get(p)
    await cached(p, item("1", "old"))
    fake.tables["u"] = FakeTable("u", hash_key="id")  # recreated outside, keyed by "id"
    writes = {
        "u": [{"PutRequest": {"Item": {"id": s("9"), "v": s("u")}}}],
        "t": [{"PutRequest": {"Item": item("1", "new")}}],
    }
    await ok(p, request("BatchWriteItem", RequestItems=writes))
    assert await get(p) == (item("1", "new"), "hit")


async def u_get(p: Proxy) -> None:
    answer = await p.handle(request("GetItem", TableName="u", Key={"pk": s("1")}))
    assert answer.status == 200, answer.body


class OddUnprocessedDynamoDB(HeldDynamoDB):
    """Answers a BatchWriteItem with one more unprocessed item than it was sent, whose key
    fits no schema (no DynamoDB does this; the proxy must still not guess)."""

    def _batch_write(
        self, payload: dict[str, Any], unprocessed: tuple[dict[str, Any], ...]
    ) -> dict[str, Any]:
        answer = super()._batch_write(payload, unprocessed)
        odd = {"PutRequest": {"Item": {"not-a-key": s("?")}}}
        answer["UnprocessedItems"].setdefault("t", []).append(odd)
        return answer


async def test_an_unprocessed_item_the_proxy_cannot_key_drops_its_table() -> None:
    """``_unprocessed``: an unprocessed item whose key cannot be read leaves unknown which of
    the table's writes happened, so the table's entries are dropped rather than written
    through (a processed item of it is then read again, a miss)."""
    fake = OddUnprocessedDynamoDB(FakeTable("t"))
    fake.put_direct("t", item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    put = {"PutRequest": {"Item": item("1", "new")}}
    await ok(p, request("BatchWriteItem", RequestItems={"t": [put]}))
    assert await get(p) == (item("1", "new"), "miss")


# Guards found by the mutation run of the final code (tests/MUTANTS.md) ---------------------


class IndexedTable(FakeTable):
    """A table with a global secondary index keyed by ``g``."""

    def description(self) -> dict[str, Any]:
        index = {"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}
        return {**super().description(), "GlobalSecondaryIndexes": [index]}


class IndexedDynamoDB(HeldDynamoDB):
    """Refuses, as DynamoDB does, a GetItem whose projection steps into the index key g."""

    def _answer(self, operation: str, payload: dict[str, Any], held: Any) -> dict[str, Any]:
        if operation == "GetItem" and payload.get("ProjectionExpression") == "g.x":
            raise _Refused("ValidationException")
        return super()._answer(operation, payload, held)


async def test_a_projection_into_an_index_key_of_a_known_table_goes_to_dynamodb() -> None:
    """``get_item`` takes the registry's info without ``_resolve`` only for a read with no
    projection: a projection into an index key of a table the proxy already knows (its
    item cached) still meets ``_resolve``'s index-key check, so the client gets DynamoDB's
    refusal, not a hit projected from the cache."""
    fake = IndexedDynamoDB(IndexedTable("t"))
    stored = {"pk": s("1"), "g": s("x")}
    fake.put_direct("t", stored)
    p = proxy(fake)
    await cached(p, stored)
    projected = request("GetItem", TableName="t", Key={"pk": s("1")}, ProjectionExpression="g.x")
    answer = await p.handle(projected)
    assert (answer.status, cache_of(answer)) == (400, "bypass")
    assert orjson.loads(answer.body)["__type"].endswith("#ValidationException")
    assert fake.count("GetItem") == 2 and last_sent(fake, "GetItem") == orjson.loads(projected.body)


async def test_a_batch_get_whose_consistent_table_found_nothing_is_answered() -> None:
    """``_merge`` reads a pass-through table's items as ``responses.get(table, [])``: an
    answer whose Responses leaves out a table it found nothing in (as HeldDynamoDB's does)
    is still answered, that table with no items, beside the cached table's hit."""
    fake = HeldDynamoDB(FakeTable("t"), FakeTable("u"))
    fake.put_direct("t", item("1", "one"))
    p = proxy(fake)
    await cached(p, item("1", "one"))
    u = {"Keys": keys("9"), "ConsistentRead": True}
    answer = await p.handle(
        request("BatchGetItem", RequestItems={"t": {"Keys": keys("1")}, "u": u})
    )
    assert (answer.status, cache_of(answer)) == (200, "miss"), answer.body
    body = orjson.loads(answer.body)
    assert body["Responses"] == {"t": [item("1", "one")], "u": []}
    assert body["UnprocessedKeys"] == {}
    assert last_sent(fake, "BatchGetItem") == {"RequestItems": {"u": u}}


async def test_a_write_whose_key_no_longer_fits_has_the_table_looked_up_again() -> None:
    """``_keys``' ``suspect``: a written key that does not fit the schema the proxy knows
    (the table was recreated outside with a range key) has the table described again
    before its next use, so the next write is keyed by the new schema. Without it the old
    schema would key the new item by its hash key alone, and a GetItem that DynamoDB
    refuses (no range key) would be answered from the cache."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    fake.tables["t"] = FakeTable("t", range_key="sk")  # recreated outside
    delete = request("DeleteItem", TableName="t", Key={"pk": s("1"), "sk": s("a")})
    await ok(p, delete)  # a key of the new schema: DynamoDB takes it
    new = {"pk": s("1"), "sk": s("b"), "v": s("new")}
    await ok(p, request("PutItem", TableName="t", Item=new))
    full_key = request("GetItem", TableName="t", Key={"pk": s("1"), "sk": s("b")})
    answer = await p.handle(full_key)
    assert (orjson.loads(answer.body), cache_of(answer)) == ({"Item": new}, "hit")
    answer = await p.handle(request("GetItem", TableName="t", Key={"pk": s("1")}))
    assert (answer.status, cache_of(answer)) == (400, "bypass")
    assert orjson.loads(answer.body)["__type"].endswith("#ValidationException")


class UnreadableUnprocessedDynamoDB(HeldDynamoDB):
    """Writes a BatchWriteItem's items and answers that one of table t's was unprocessed,
    in a form no write request has (no DynamoDB does this; the proxy must not guess)."""

    def _batch_write(
        self, payload: dict[str, Any], unprocessed: tuple[dict[str, Any], ...]
    ) -> dict[str, Any]:
        answer = super()._batch_write(payload, unprocessed)
        answer["UnprocessedItems"] = {"t": [{"NeitherPutNorDelete": {}}]}
        return answer


async def test_unprocessed_items_the_proxy_cannot_read_drop_every_table_of_the_write() -> None:
    """``_unprocessed``'s ``Uncacheable`` branch: when UnprocessedItems cannot be read at
    all, which writes happened is unknown, so every table of the batch is dropped (the
    client still gets DynamoDB's 200, and each item written is read again, a miss)."""
    fake = UnreadableUnprocessedDynamoDB(FakeTable("t"), FakeTable("u"))
    fake.put_direct("t", item("1", "old"))
    fake.put_direct("u", item("1", "u"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    await u_cached(p, "miss")
    writes = {
        "t": [{"PutRequest": {"Item": item("1", "new")}}],
        "u": [{"PutRequest": {"Item": item("1", "u2")}}],
    }
    await ok(p, request("BatchWriteItem", RequestItems=writes))
    assert await get(p) == (item("1", "new"), "miss")
    answer = await p.handle(request("GetItem", TableName="u", Key={"pk": s("1")}))
    assert (orjson.loads(answer.body)["Item"], cache_of(answer)) == (item("1", "u2"), "miss")
