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
from typing import Any

import orjson

from daxproxy.core.cache import MAX_DROPPED_TABLES, Eviction, ItemCache, entry_size
from daxproxy.core.config import Settings
from daxproxy.core.wire import WireResponse
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from tests.fakes import FakeTable, HeldDynamoDB


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


async def test_two_puts_to_one_key_answered_out_of_order_leave_it_to_be_read_again() -> None:
    """``key in ticket.contended`` (service/item_writes.py): DynamoDB applied "a" then "b"
    but answered "b" first; storing each answer as it comes would keep "a"."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    first, second = fake.hold("PutItem"), fake.hold("PutItem")
    writing_a = asyncio.create_task(ok(p, put("1", "a")))
    await first.wait_reached()
    writing_b = asyncio.create_task(ok(p, put("1", "b")))
    await second.wait_reached()
    assert fake.item("t", pk="1") == item("1", "b")
    second.release()
    await writing_b
    first.release()
    await writing_a
    assert await get(p) == (item("1", "b"), "miss")


async def test_two_updates_to_one_key_answered_out_of_order_leave_it_to_be_read_again() -> None:
    """``updated not in ticket.contended`` (service/item_writes.py): an UpdateItem's ALL_NEW
    answer is stored only when no other write to its key overlapped it."""
    fake = fake_with(item("1", "old"))
    p = proxy(fake)
    await cached(p, item("1", "old"))
    first, second = fake.hold("UpdateItem"), fake.hold("UpdateItem")
    writing_a = asyncio.create_task(ok(p, update("1", "a")))
    await first.wait_reached()
    writing_b = asyncio.create_task(ok(p, update("1", "b")))
    await second.wait_reached()
    second.release()
    await writing_b
    first.release()
    await writing_a
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
