"""Coherence across workers (issue 14): two or three proxies in one process, each with its
own caches and a ChangeLink to one ChangeHub, in front of one HeldDynamoDB.

Each test makes a change through one proxy (or behind all of them) and asserts what a client
of another sees once that change has been applied there (:func:`settled`: waits for the
channel's counters, never a fixed time). Which guard each test pins is in its docstring;
each was checked by deleting the guard and watching the test fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from daxproxy.core.config import Settings
from daxproxy.core.wire import WireResponse
from daxproxy.service.coherence import Coherence, decode_key, encode_key
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy, open_proxy
from daxproxy.service.tables import MAX_AGE
from daxproxy.workers.channel import ChangeHub, ChangeLink
from tests.fakes import FakeTable, HeldDynamoDB

PROMPTLY = 5.0  # bounds a wait that should end within milliseconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(operation: str, **payload: Any) -> ClientRequest:
    target = f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), orjson.dumps(payload), target)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def item(v: str, pk: str = "1") -> dict[str, Any]:
    return {"pk": s(pk), "v": s(v)}


def put(v: str) -> ClientRequest:
    return request("PutItem", TableName="t", Item=item(v))


def cache_of(answer: WireResponse) -> str:
    return dict(answer.headers)["x-daxproxy-cache"]


async def handle(p: Proxy, call: ClientRequest) -> WireResponse:
    async with asyncio.timeout(PROMPTLY):
        return await p.handle(call)


async def ok(p: Proxy, call: ClientRequest) -> None:
    answer = await handle(p, call)
    assert answer.status == 200, answer.body


async def get(p: Proxy) -> tuple[dict[str, Any] | None, str]:
    answer = await handle(p, request("GetItem", TableName="t", Key={"pk": s("1")}))
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body).get("Item"), cache_of(answer)


async def query(p: Proxy) -> tuple[list[Any], str]:
    call = request(
        "Query",
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("1")},
    )
    answer = await handle(p, call)
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body)["Items"], cache_of(answer)


async def cached(p: Proxy, value: dict[str, Any]) -> None:
    assert await get(p) == (value, "miss")
    assert await get(p) == (value, "hit")


def published(p: Proxy) -> int:
    assert p.metrics is not None
    return sum(p.metrics.changes_published.values())


def applied(p: Proxy) -> int:
    assert p.metrics is not None
    return sum(p.metrics.changes_applied.values())


async def until(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(PROMPTLY):
        while not done():
            await asyncio.sleep(0.001)


async def settled(*proxies: Proxy) -> None:
    """Until every change each proxy published has been applied by every other."""
    total = sum(published(p) for p in proxies)
    await until(lambda: all(applied(p) == total - published(p) for p in proxies))


class Workers:
    """A hub and proxies linked to it, in front of one fake DynamoDB."""

    def __init__(self, path: str, fake: HeldDynamoDB) -> None:
        self.path = path
        self.fake = fake
        self.hub = ChangeHub(path)
        self.links: list[ChangeLink] = []

    async def proxy(self, clock: Clock | None = None, **settings: Any) -> Proxy:
        link = await ChangeLink.connect(self.path, len(self.links) + 1)
        self.links.append(link)
        return build_proxy(
            Settings(upstream="http://127.0.0.1:1", **settings),
            self.fake,
            clock=clock or Clock(),
            changes=link,
        )

    async def restart_hub(self) -> None:
        """The hub goes away (every link is lost) and a new one comes at the same path."""
        await self.hub.close()
        await until(lambda: not any(link.live for link in self.links))
        self.hub = ChangeHub(self.path)
        await self.hub.start()
        await until(lambda: all(link.live for link in self.links))

    async def close(self) -> None:
        for link in self.links:
            await link.close()
        await self.hub.close()


@pytest.fixture
async def workers() -> AsyncIterator[Workers]:
    directory = tempfile.mkdtemp(prefix="daxproxy-hub-")  # short: a socket path is < 108
    fake = HeldDynamoDB(FakeTable("t"))
    fake.put_direct("t", item("1"))
    workers = Workers(os.path.join(directory, "changes"), fake)
    await workers.hub.start()
    yield workers
    await workers.close()
    shutil.rmtree(directory)


def test_a_key_travels_as_the_item_cache_keys_it() -> None:
    for key in [("arn", "1", None), ("arn", b"\x00\xff", "r"), ("arn", "1", b"")]:
        assert decode_key(orjson.loads(orjson.dumps(encode_key(key)))) == key


# Writes ------------------------------------------------------------------------------------


async def test_a_write_through_one_worker_evicts_the_key_in_the_others(workers: Workers) -> None:
    """Guard: applying a write evicts its keys (Coherence._apply_written)."""
    a, b, c = await workers.proxy(), await workers.proxy(), await workers.proxy()
    for p in (b, c):
        await cached(p, item("1"))
    await ok(a, put("2"))
    await settled(a, b, c)
    for p in (b, c):
        assert await get(p) == (item("2"), "miss")


async def test_a_fill_in_another_worker_overtaken_by_a_write_is_neither_joined_nor_stored(
    workers: Workers,
) -> None:
    """Guard: a change is applied through the receiver's WriteTracker (_overtake)."""
    a, b = await workers.proxy(), await workers.proxy()
    hold = workers.fake.hold("GetItem")
    early = asyncio.create_task(get(b))  # has read v=1; answers when released
    await hold.wait_reached()
    await ok(a, put("2"))
    await settled(a, b)
    assert await get(b) == (item("2"), "miss")  # a fill of its own, not the overtaken one
    hold.release()
    await early  # concurrent with the write: either value will do
    assert await get(b) == (item("2"), "hit")  # what the later read stored


async def test_a_write_in_another_worker_overlapping_a_write_is_not_stored(
    workers: Workers,
) -> None:
    """Guard: _overtake again: a write of the receiver's in flight evicts rather than stores
    when another worker's write to its key was answered meanwhile (their order is unknown)."""
    a, b = await workers.proxy(), await workers.proxy()
    hold = workers.fake.hold("PutItem")
    first = asyncio.create_task(ok(b, put("2")))  # has landed; answers when released
    await hold.wait_reached()
    await ok(a, put("3"))  # lands after it
    await settled(a, b)
    hold.release()
    await first
    assert await get(b) == (item("3"), "miss")


async def test_a_write_whose_outcome_is_unknown_holds_its_key_in_every_worker(
    workers: Workers,
) -> None:
    """Guard: applying an unsure write holds its keys (Coherence._apply_unsure)."""
    clock = Clock()
    a, b = await workers.proxy(clock), await workers.proxy(clock)
    await cached(b, item("1"))
    lost = workers.fake.hold("PutItem", timeout=True, applied=False)
    write = asyncio.create_task(handle(a, put("2")))
    await lost.wait_reached()
    lost.release()
    assert (await write).status == 500
    await settled(a, b)
    assert await get(b) == (item("1"), "miss")  # evicted, and this fill is not stored
    workers.fake.put_direct("t", item("2"))  # the write lands after all
    assert await get(b) == (item("2"), "miss")
    clock.now += Settings().request_timeout_millis / 1000  # it can no longer land
    await cached(b, item("2"))


async def test_a_read_after_a_write_answered_5xx_does_not_join_the_fill_it_overtook(
    workers: Workers,
) -> None:
    """Guard: an unsure write is applied through the receiver's WriteTracker too."""
    a, b = await workers.proxy(), await workers.proxy()
    hold = workers.fake.hold("GetItem")
    early = asyncio.create_task(get(b))  # has read v=1
    await hold.wait_reached()
    workers.fake.hold("PutItem", status=500).release()  # applied, then answered 500
    assert (await handle(a, put("2"))).status == 500
    await settled(a, b)
    assert await get(b) == (item("2"), "miss")
    hold.release()
    await early


async def test_a_write_whose_key_does_not_fit_drops_the_table_in_every_worker(
    workers: Workers,
) -> None:
    """Guard: applying a write drops the tables whose written keys could not be read."""
    a, b = await workers.proxy(), await workers.proxy()
    for p in (a, b):
        await cached(p, item("1"))
    # Behind the proxies, the table is created again with another key.
    workers.fake.tables["t"] = FakeTable("t", hash_key="id")
    await ok(a, request("PutItem", TableName="t", Item={"id": s("1"), "v": s("2")}))
    await settled(a, b)
    answer = await handle(b, request("GetItem", TableName="t", Key={"pk": s("1")}))
    assert cache_of(answer) != "hit"


async def test_in_strict_mode_a_write_drops_the_tables_pages_in_every_worker(
    workers: Workers,
) -> None:
    """Guard: applying a write tells the query cache (strict mode drops the pages)."""
    a, b = await workers.proxy(mode="strict"), await workers.proxy(mode="strict")
    assert await query(b) == ([item("1")], "miss")
    assert await query(b) == ([item("1")], "hit")
    await ok(a, put("2"))
    await settled(a, b)
    assert await query(b) == ([item("2")], "miss")


async def test_in_strict_mode_an_unsure_write_holds_the_tables_pages_in_every_worker(
    workers: Workers,
) -> None:
    """Guard: applying an unsure write tells the query cache (strict mode holds the pages)."""
    a, b = await workers.proxy(mode="strict"), await workers.proxy(mode="strict")
    lost = workers.fake.hold("PutItem", timeout=True, applied=False)
    write = asyncio.create_task(handle(a, put("2")))
    await lost.wait_reached()
    lost.release()
    assert (await write).status == 500
    await settled(a, b)
    assert await query(b) == ([item("1")], "miss")  # not stored: the write may land
    workers.fake.put_direct("t", item("2"))
    assert await query(b) == ([item("2")], "miss")


# PartiQL and tables ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 500])
async def test_a_partiql_write_drops_the_tables_items_in_every_worker(
    workers: Workers, status: int
) -> None:
    """Guard: applying a drop drops (or, unsure, holds) the tables (_apply_dropped)."""
    a, b = await workers.proxy(), await workers.proxy()
    await cached(b, item("1"))
    assert await query(b) == ([item("1")], "miss")
    if status != 200:
        workers.fake.hold("ExecuteStatement", status=status).release()
    statement = request(
        "ExecuteStatement",
        Statement='UPDATE "t" SET "v" = ? WHERE "pk" = ?',
        Parameters=[s("2"), s("1")],
    )
    assert (await handle(a, statement)).status == status
    await settled(a, b)
    assert await get(b) == (item("2"), "miss")
    assert await query(b) == ([item("2")], "miss")
    if status != 200:  # may yet land: held, so not stored
        assert await get(b) == (item("2"), "miss")
        assert await query(b) == ([item("2")], "miss")


async def test_a_table_deleted_through_a_worker_that_never_used_it_is_forgotten_by_all(
    workers: Workers,
) -> None:
    """Guard: a table change publishes the table as named (the sender may not know it)."""
    a, b = await workers.proxy(), await workers.proxy()
    await cached(b, item("1"))
    await ok(a, request("DeleteTable", TableName="t"))
    workers.fake.tables["t"] = FakeTable("t", hash_key="id")  # created again, another key
    await settled(a, b)
    answer = await handle(b, request("GetItem", TableName="t", Key={"pk": s("1")}))
    assert answer.status == 400 and b"ValidationException" in answer.body
    assert published(b) == 0  # what it applied, it does not send back


async def test_a_table_change_answered_5xx_holds_the_table_in_every_worker(
    workers: Workers,
) -> None:
    """Guard: an unsure table change publishes a hold of the table."""
    a, b = await workers.proxy(), await workers.proxy()
    await cached(b, item("1"))
    workers.fake.hold("DeleteTable", status=500).release()  # applied, then answered 500
    assert (await handle(a, request("DeleteTable", TableName="t"))).status == 500
    workers.fake.tables["t"] = FakeTable("t")  # created again, empty
    await settled(a, b)
    assert await get(b) == (None, "miss")
    workers.fake.put_direct("t", item("2"))  # the change may yet land: nothing stored
    assert await get(b) == (item("2"), "miss")


async def test_a_table_one_worker_finds_changed_is_forgotten_by_every_worker(
    workers: Workers,
) -> None:
    """Guard: the registry's listener publishes what it forgets (Coherence.forgotten)."""
    a_clock, b_clock = Clock(), Clock()
    a = await workers.proxy(a_clock, record_ttl_millis=0)
    b = await workers.proxy(b_clock, record_ttl_millis=0)
    for p in (a, b):
        await cached(p, item("1"))
    workers.fake.tables["t"] = FakeTable("t")  # deleted and created again
    workers.fake.put_direct("t", item("2"))
    b_clock.now += MAX_AGE  # b looks the table up again; a would not for a while
    assert await get(b) == (item("2"), "miss")
    await settled(a, b)
    assert await get(a) == (item("2"), "miss")


@pytest.mark.parametrize(
    "invalidation", [{"table": "t", "key": {"pk": s("1")}}, {"table": "t"}, {"all": True}]
)
async def test_an_admin_invalidation_reaches_every_worker(
    workers: Workers, invalidation: dict[str, Any]
) -> None:
    """Guards: CacheAdmin publishes each kind of invalidation."""
    a, b = await workers.proxy(), await workers.proxy()
    await cached(b, item("1"))
    workers.fake.put_direct("t", item("2"))  # behind the proxies' backs
    assert a.admin is not None
    await a.admin.invalidate(invalidation)
    await settled(a, b)
    assert await get(b) == (item("2"), "miss")


# The channel lost ----------------------------------------------------------------------------


async def test_a_worker_that_lost_the_channel_drops_its_caches_and_stores_nothing_until_back(
    workers: Workers,
) -> None:
    """Guards: a lost link drops the caches and turns storing off; its return drops them
    again and turns storing back on (Coherence.lost, restored)."""
    a, b = await workers.proxy(mode="strict"), await workers.proxy(mode="strict")
    await cached(b, item("1"))
    assert await query(b) == ([item("1")], "miss")
    await workers.hub.close()
    await until(lambda: not workers.links[1].live)
    assert b.metrics is not None and b.metrics.change_channel_lost == 1
    assert b.admin is not None
    stats = b.admin.stats()  # dropped at once, their memory too
    assert stats["item_cache"]["entries"] == stats["query_cache"]["entries"] == 0
    await ok(a, put("2"))  # the channel is down: b cannot hear of it
    for _ in range(2):
        assert await get(b) == (item("2"), "miss")
        assert await query(b) == ([item("2")], "miss")
    workers.hub = ChangeHub(workers.path)
    await workers.hub.start()
    await until(lambda: all(link.live for link in workers.links))
    await cached(b, item("2"))
    assert await query(b) == ([item("2")], "miss")
    assert await query(b) == ([item("2")], "hit")


async def test_a_worker_without_its_channel_does_not_share_fills(workers: Workers) -> None:
    """Guard: while the cache stores nothing, a miss does not join a fill in flight
    (ItemReads._joinable): a write through another worker, which this one cannot hear of,
    may have overtaken it."""
    b = await workers.proxy()
    await workers.hub.close()
    await until(lambda: not workers.links[0].live)
    hold = workers.fake.hold("GetItem")
    early = asyncio.create_task(get(b))  # has read v=1
    await hold.wait_reached()
    workers.fake.put_direct("t", item("2"))  # a write through another worker, unheard of
    assert await get(b) == (item("2"), "miss")  # its own read, not the held one's
    hold.release()
    await early


async def test_what_a_worker_cached_before_its_link_came_back_is_dropped(
    workers: Workers,
) -> None:
    """Guard: the link's return drops the caches (changes may have been missed while the
    worker was still storing, before it noticed the loss)."""
    b = await workers.proxy()
    await cached(b, item("1"))
    coherence = workers.links[0]._owner
    assert isinstance(coherence, Coherence)
    coherence.lost()  # noticed, storing off...
    coherence._storing(True)  # ...but as if it had stored meanwhile
    await cached(b, item("1"))
    workers.fake.put_direct("t", item("2"))  # a change it missed
    coherence.restored()
    assert await get(b) == (item("2"), "miss")


async def test_a_worker_cut_off_for_falling_behind_drops_its_caches(workers: Workers) -> None:
    """The hub cuts off a worker whose backlog passes the bound; it drops its caches."""
    workers.hub.max_backlog_bytes = 64 << 10
    a, b, c = await workers.proxy(), await workers.proxy(), await workers.proxy()
    for p in (b, c):
        await cached(p, item("1"))
    slow = workers.links[1]._transport
    assert slow is not None
    slow.pause_reading()  # b's event loop is busy elsewhere
    workers.fake.put_direct("t", item("2"))
    async with asyncio.timeout(PROMPTLY):
        while not workers.hub.cut_off:
            for _ in range(64):
                await ok(a, request("PutItem", TableName="t", Item=item("x" * 1000, pk="2")))
            await asyncio.sleep(0)
    slow.resume_reading()
    assert b.metrics is not None
    await until(lambda: b.metrics is not None and b.metrics.change_channel_lost == 1)
    await until(lambda: workers.links[1].live)
    assert await get(b) == (item("2"), "miss")
    # The others are told that b's unread changes may be lost, and drop theirs too.
    await until(lambda: c.metrics is not None and c.metrics.change_channel_resets == 1)
    assert await get(c) == (item("2"), "miss")


@pytest.mark.parametrize("write", ["PutItem", "DeleteItem"])
async def test_a_write_that_overlapped_the_loss_of_the_channel_is_not_stored(
    workers: Workers, write: str
) -> None:
    """Guard: a write stores its value only when no drop came between its start and its
    answer (ItemWrites' ``since``): the worker may have missed a later write to the key."""
    b = await workers.proxy()
    hold = workers.fake.hold(write)
    if write == "PutItem":
        call, expected = put("2"), item("2")
    else:
        call, expected = request("DeleteItem", TableName="t", Key={"pk": s("1")}), None
    writing = asyncio.create_task(ok(b, call))
    await hold.wait_reached()
    await workers.restart_hub()
    hold.release()
    await writing
    assert await get(b) == (expected, "miss")


async def test_publishing_with_the_channel_down_never_fails_a_write(workers: Workers) -> None:
    a = await workers.proxy()
    await workers.hub.close()
    await until(lambda: not workers.links[0].live)
    await ok(a, put("2"))
    assert await get(a) == (item("2"), "miss")  # stores nothing meanwhile


# Metrics --------------------------------------------------------------------------------------


async def test_the_channel_is_measured(workers: Workers) -> None:
    a, b = await workers.proxy(), await workers.proxy()
    await ok(a, put("2"))
    await settled(a, b)
    assert a.metrics is not None and b.metrics is not None
    sent = generate_latest(a.metrics.registry).decode()
    heard = generate_latest(b.metrics.registry).decode()
    assert 'daxproxy_changes_published_total{kind="write"} 1.0' in sent
    assert 'daxproxy_changes_applied_total{kind="write"} 1.0' in heard
    assert "daxproxy_change_lag_seconds_count 1.0" in heard
    assert "daxproxy_change_channel_lost_total 0.0" in heard


def test_one_worker_alone_has_no_channel_metrics() -> None:
    p = build_proxy(Settings(upstream="http://127.0.0.1:1"), HeldDynamoDB())
    assert p.metrics is not None
    assert b"daxproxy_change" not in generate_latest(p.metrics.registry)


# Assembly -------------------------------------------------------------------------------------


async def test_open_proxy_links_the_worker_before_it_serves_and_unlinks_it_cleanly(
    workers: Workers,
) -> None:
    other = await workers.proxy()
    settings = Settings(upstream="http://127.0.0.1:1")
    async with open_proxy(settings, changes=workers.path, worker=2) as proxy:
        assert workers.hub.peers == 2
        assert proxy.metrics is not None and proxy.metrics.channel
    await until(lambda: workers.hub.peers == 1)
    third = await workers.proxy()
    await ok(third, put("2"))
    await settled(other, third)  # relayed after any reset the hub sent when it left
    assert other.metrics is not None and other.metrics.change_channel_resets == 0  # said bye


async def test_a_worker_whose_hub_is_not_there_does_not_start(workers: Workers) -> None:
    with pytest.raises(OSError):
        async with open_proxy(Settings(upstream="http://127.0.0.1:1"), changes=workers.path + "x"):
            pass
