"""No read started after a write's answer returns an older value (issue 12, items 1-4, 6, 10).

The proxy is assembled by ``build_proxy`` with a fake clock, in front of
:class:`~tests.fakes.HeldDynamoDB`, which reads or changes its state when a request arrives
and answers when the test releases it: a fill can read early and answer late, overtaken by
a write that has already been answered. Each test fails on the mechanism it names when that
mechanism is removed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from daxproxy.core.config import Settings
from daxproxy.core.wire import WireResponse
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.tables import MAX_AGE
from tests.fakes import FakeTable, HeldDynamoDB

FOREIGN_ARN = "arn:aws:dynamodb:us-east-1:999999999999:table/t"
# A read through the proxy that nothing holds answers at once; one that joined a held fill
# would wait for its release, and fails after this long instead of hanging the suite.
PROMPTLY = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def proxy(fake: HeldDynamoDB, clock: Clock | None = None, **settings: Any) -> Proxy:
    return build_proxy(
        Settings(upstream="http://127.0.0.1:1", **settings), fake, clock=clock or Clock()
    )


def request(operation: str, **payload: Any) -> ClientRequest:
    target = f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), orjson.dumps(payload), target)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def item(v: str, pk: str = "1") -> dict[str, Any]:
    return {"pk": s(pk), "v": s(v)}


def cache_of(answer: WireResponse) -> str:
    return dict(answer.headers)["x-daxproxy-cache"]


def get_request(pk: str = "1", table: str = "t") -> ClientRequest:
    return request("GetItem", TableName=table, Key={"pk": s(pk)})


async def handle(p: Proxy, request: ClientRequest) -> WireResponse:
    async with asyncio.timeout(PROMPTLY):
        return await p.handle(request)


async def get(p: Proxy, pk: str = "1") -> tuple[dict[str, Any] | None, str]:
    answer = await handle(p, get_request(pk))
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body).get("Item"), cache_of(answer)


async def batch_get(p: Proxy, pk: str = "1") -> dict[str, Any] | None:
    answer = await handle(p, request("BatchGetItem", RequestItems={"t": {"Keys": [{"pk": s(pk)}]}}))
    assert answer.status == 200, answer.body
    body = orjson.loads(answer.body)
    assert not body.get("UnprocessedKeys")
    found = body["Responses"]["t"]
    return found[0] if found else None


def query_request(table: str = "t") -> ClientRequest:
    return request(
        "Query",
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("1")},
    )


async def query(p: Proxy) -> tuple[list[Any], str]:
    answer = await handle(p, query_request())
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body)["Items"], cache_of(answer)


def update(v: str, returns: str) -> ClientRequest:
    return request(
        "UpdateItem",
        TableName="t",
        Key={"pk": s("1")},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": s(v)},
        ReturnValues=returns,
    )


def transact_put(v: str) -> ClientRequest:
    return request(
        "TransactWriteItems", TransactItems=[{"Put": {"TableName": "t", "Item": item(v)}}]
    )


async def held_fill(fake: HeldDynamoDB, p: Proxy, operation: str = "GetItem") -> Any:
    """A read through the proxy whose upstream read has happened and whose answer is held:
    the hold, and the task that awaits the answer."""
    hold = fake.hold(operation)
    read = get_request() if operation == "GetItem" else query_request()
    task = asyncio.create_task(p.handle(read))
    await hold.wait_reached()
    return hold, task


# 1. A later miss never joins a fill that an answered write overtook ----------------------


# Writes that evict the key rather than store its new value.
EVICTING_WRITES = {
    "UpdateItem ALL_OLD": lambda: update("2", "ALL_OLD"),
    "UpdateItem UPDATED_OLD": lambda: update("2", "UPDATED_OLD"),
    "UpdateItem UPDATED_NEW": lambda: update("2", "UPDATED_NEW"),
    "TransactWriteItems": lambda: transact_put("2"),
}


@pytest.mark.parametrize("write", EVICTING_WRITES)
@pytest.mark.parametrize("later", ["GetItem", "BatchGetItem"])
async def test_a_read_after_an_answered_write_does_not_join_the_fill_it_overtook(
    write: str, later: str
) -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, early = await held_fill(fake, p)  # has read v=1, answers late
    assert (await p.handle(EVICTING_WRITES[write]())).status == 200
    if later == "GetItem":
        assert (await get(p))[0] == item("2")
    else:
        assert await batch_get(p) == item("2")
    hold.release()
    assert (await early).status == 200  # concurrent with the write: either value will do
    assert (await get(p))[0] == item("2")  # and the overtaken fill stored nothing


async def test_a_read_after_a_write_answered_5xx_does_not_join_the_fill_it_overtook() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, early = await held_fill(fake, p)
    failing = fake.hold("PutItem", status=500)  # applied, then answered 500
    write = asyncio.create_task(p.handle(request("PutItem", TableName="t", Item=item("2"))))
    await failing.wait_reached()
    failing.release()
    assert (await write).status == 500
    assert (await get(p))[0] == item("2")
    hold.release()
    await early


async def test_a_read_after_two_overlapping_writes_does_not_join_the_fill_they_overtook() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, early = await held_fill(fake, p)
    first = fake.hold("PutItem")
    one = asyncio.create_task(p.handle(request("PutItem", TableName="t", Item=item("2"))))
    await first.wait_reached()
    assert (await p.handle(request("PutItem", TableName="t", Item=item("3")))).status == 200
    first.release()
    assert (await one).status == 200
    assert (await get(p))[0] == item("3")
    hold.release()
    await early


async def test_concurrent_misses_still_share_one_upstream_read() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, first = await held_fill(fake, p)
    second = asyncio.create_task(get(p))
    batch = asyncio.create_task(batch_get(p))
    await asyncio.sleep(0)  # let both reach the shared fill
    hold.release()
    assert (await first).status == 200
    assert (await second)[0] == item("1") and await batch == item("1")
    assert fake.count("GetItem") == 1 and fake.count("BatchGetItem") == 0


# 2. A drop of the table (PartiQL, DeleteTable, UpdateTable) retires fills in flight ------


async def test_a_fill_overtaken_by_a_partiql_write_is_not_stored() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, early = await held_fill(fake, p)
    statement = request(
        "ExecuteStatement",
        Statement='UPDATE "t" SET "v" = ? WHERE "pk" = ?',
        Parameters=[s("2"), s("1")],
    )
    assert (await p.handle(statement)).status == 200
    assert (await get(p))[0] == item("2")  # does not join the overtaken fill
    hold.release()
    await early
    assert await get(p) == (item("2"), "hit")  # what the later read stored, not the early one


@pytest.mark.parametrize("change", ["DeleteTable", "UpdateTable"])
async def test_a_fill_overtaken_by_a_table_change_is_not_stored(change: str) -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, early = await held_fill(fake, p)
    assert (await p.handle(request(change, TableName="t"))).status == 200
    if change == "DeleteTable":
        fake.tables["t"] = FakeTable("t")  # created again, empty
    hold.release()
    await early
    expected = None if change == "DeleteTable" else item("1")
    assert (await get(p))[0] == expected
    assert (await get(p))[0] == expected


async def test_a_query_fill_overtaken_by_an_unreadable_partiql_write_is_not_stored() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    hold, early = await held_fill(fake, p, "Query")
    # A comment makes the statement unreadable to the proxy: every table counts as written.
    unreadable = request(
        "ExecuteStatement",
        Statement='UPDATE "t" SET "v" = ? WHERE "pk" = ? -- a comment',
        Parameters=[s("2"), s("1")],
    )
    assert (await p.handle(unreadable)).status == 200
    hold.release()
    await early
    assert await query(p) == ([item("2")], "miss")


# 3. A write whose outcome is unknown holds its keys until it can no longer land ----------


async def test_a_timed_out_write_that_lands_later_is_not_hidden_by_a_fill() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    clock = Clock()
    p = proxy(fake, clock, request_timeout_millis=10_000)
    assert (await get(p))[0] == item("1")  # cached
    lost = fake.hold("PutItem", timeout=True, applied=False)
    write = asyncio.create_task(p.handle(request("PutItem", TableName="t", Item=item("2"))))
    await lost.wait_reached()
    lost.release()
    assert (await write).status == 500
    assert await get(p) == (item("1"), "miss")  # evicted; this fill must not be stored
    fake.put_direct("t", item("2"))  # the write lands after all
    clock.now += 9.9
    assert await get(p) == (item("2"), "miss")
    clock.now += 0.1  # the write can no longer land: fills are stored again
    assert await get(p) == (item("2"), "miss")
    assert await get(p) == (item("2"), "hit")


async def test_a_write_answered_while_another_may_still_land_is_not_stored() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    lost = fake.hold("PutItem", timeout=True, applied=False)
    write = asyncio.create_task(p.handle(request("PutItem", TableName="t", Item=item("2"))))
    await lost.wait_reached()
    lost.release()
    assert (await write).status == 500
    assert (await p.handle(request("PutItem", TableName="t", Item=item("3")))).status == 200
    fake.put_direct("t", item("2"))  # the first write lands after the second
    assert await get(p) == (item("2"), "miss")


async def test_in_strict_mode_a_timed_out_write_holds_the_tables_pages() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake, mode="strict")
    assert await query(p) == ([item("1")], "miss")
    lost = fake.hold("PutItem", timeout=True, applied=False)
    write = asyncio.create_task(p.handle(request("PutItem", TableName="t", Item=item("2"))))
    await lost.wait_reached()
    lost.release()
    assert (await write).status == 500
    assert await query(p) == ([item("1")], "miss")  # not stored: the write may land
    fake.put_direct("t", item("2"))
    assert await query(p) == ([item("2")], "miss")


async def test_a_write_abandoned_in_flight_holds_its_keys() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    assert (await get(p))[0] == item("1")
    lost = fake.hold("PutItem", applied=False)
    write = asyncio.create_task(p.handle(request("PutItem", TableName="t", Item=item("2"))))
    await lost.wait_reached()
    write.cancel()  # the client went away; the request may still land
    with pytest.raises(asyncio.CancelledError):
        await write
    assert await get(p) == (item("1"), "miss")
    fake.put_direct("t", item("2"))
    assert await get(p) == (item("2"), "miss")


# 4. The query cache keys a table by its ARN ------------------------------------------------


async def test_a_query_on_another_accounts_table_is_not_answered_from_the_local_page() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    assert await query(p) == ([item("1")], "miss")
    answer = await p.handle(query_request(FOREIGN_ARN))
    assert answer.status == 400
    assert b"ResourceNotFoundException" in answer.body
    assert cache_of(answer) == "bypass"


async def test_a_query_by_the_tables_own_arn_shares_its_pages_and_drops() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake, mode="strict")
    arn = fake.tables["t"].arn
    assert await query(p) == ([item("1")], "miss")
    answer = await p.handle(query_request(arn))
    assert cache_of(answer) == "hit"
    assert (await p.handle(request("PutItem", TableName=arn, Item=item("2")))).status == 200
    assert await query(p) == ([item("2")], "miss")


# 6. The table registry forgets a table that changed outside the proxy -------------------


async def recreate_with_another_schema(fake: HeldDynamoDB) -> None:
    fake.tables["t"] = FakeTable("t", hash_key="id")
    fake.put_direct("t", {"id": s("1"), "v": s("new")})


async def test_a_table_recreated_outside_is_found_out_within_the_registrys_age() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    clock = Clock()
    p = proxy(fake, clock, record_ttl_millis=0)  # items never expire: only the age helps
    assert await get(p) == (item("1"), "miss")
    await recreate_with_another_schema(fake)
    assert await get(p) == (item("1"), "hit")  # DAX's staleness, bounded by the age...
    clock.now += MAX_AGE
    answer = await p.handle(get_request())  # ...then DynamoDB's own answer
    assert answer.status == 400 and b"ValidationException" in answer.body
    assert cache_of(answer) == "bypass"


async def test_a_key_that_no_longer_fits_makes_the_proxy_look_again() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    clock = Clock()
    p = proxy(fake, clock)
    assert await get(p) == (item("1"), "miss")
    await recreate_with_another_schema(fake)
    clock.now += 1.0
    # A write with the new key shape does not fit the old schema: suspicious.
    new = request("PutItem", TableName="t", Item={"id": s("2"), "v": s("x")})
    assert (await p.handle(new)).status == 200
    answer = await p.handle(get_request())
    assert answer.status == 400 and b"ValidationException" in answer.body


async def test_the_same_table_described_again_keeps_its_items() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    clock = Clock()
    p = proxy(fake, clock, record_ttl_millis=0)
    assert await get(p) == (item("1"), "miss")
    clock.now += MAX_AGE
    assert await get(p) == (item("1"), "hit")
    assert fake.count("DescribeTable") == 2


# 10. Per-table state only for tables that exist ------------------------------------------


async def test_writes_to_tables_that_do_not_exist_leave_no_state_behind() -> None:
    fake = HeldDynamoDB()
    p = proxy(fake, mode="strict", stale_grace_millis=1000)
    for n in range(50):
        answer = await p.handle(request("PutItem", TableName=f"missing-{n}", Item=item("1")))
        assert answer.status == 400
    assert p.admin is not None
    stats = p.admin.stats()
    assert stats["tables"] == []
    assert stats["item_cache"]["tracked_tables"] == 0
    assert stats["query_cache"]["tracked_tables"] == 0


async def test_an_overtaken_fill_ending_leaves_the_newer_fill_to_be_shared() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    p = proxy(fake)
    old_hold, old = await held_fill(fake, p)
    assert (await handle(p, update("2", "ALL_OLD"))).status == 200
    new_hold, new = await held_fill(fake, p)  # a fill of its own: the old one was overtaken
    old_hold.release()
    await old
    joining = asyncio.create_task(get(p))  # shares the newer fill, still in flight
    await asyncio.sleep(0)
    new_hold.release()
    assert (await new).status == 200
    assert (await joining)[0] == item("2")
    assert fake.count("GetItem") == 2


async def test_a_table_recreated_outside_with_the_same_schema_drops_its_items() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", item("1"))
    clock = Clock()
    p = proxy(fake, clock, record_ttl_millis=0)
    assert await get(p) == (item("1"), "miss")
    fake.tables["t"] = FakeTable("t")  # deleted and created again: empty, a new table id
    clock.now += MAX_AGE
    assert await get(p) == (None, "miss")
