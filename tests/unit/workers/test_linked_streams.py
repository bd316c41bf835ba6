"""One stream reader per process group (issue 15, item 3): with workers and
``coherence = "streams"`` only worker 1 follows the streams; what its follower reads reaches
every other worker through the change channel, and the others tell it the tables they learn.

Two proxies in one process, each with its own caches and a ChangeLink to one ChangeHub, in
front of one :class:`~tests.fake_streams.StreamedDynamoDB`: ``a`` is the reader (worker 1),
``b`` another worker. The follower's sleep only yields, and every wait is for a condition
(bounded), never a fixed time. Which guard each test pins is in its docstring; each was
checked by deleting the guard and watching the test fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator

import pytest

from daxproxy.core.config import Settings
from daxproxy.service.proxy import Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.streams import StreamFollower
from daxproxy.workers.channel import ChangeHub, ChangeLink
from tests.fake_streams import StreamedDynamoDB
from tests.fakes import FakeTable
from tests.unit.test_streams import Sleeps, get_in
from tests.unit.workers.test_linked_proxies import (
    Clock,
    get,
    item,
    query,
    settled,
    until,
)

T_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
U_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/u"


class Group:
    """A hub, and proxies linked to it in front of one fake DynamoDB with streams."""

    def __init__(self, path: str, fake: StreamedDynamoDB) -> None:
        self.path = path
        self.fake = fake
        self.hub = ChangeHub(path)
        self.links: list[ChangeLink] = []
        self.followers: list[StreamFollower] = []

    async def link(self) -> ChangeLink:
        link = await ChangeLink.connect(self.path, len(self.links) + 1)
        self.links.append(link)
        return link

    async def proxy(self, link: ChangeLink, *, reader: bool) -> Proxy:
        p = build_proxy(
            Settings(upstream="http://127.0.0.1:1", coherence="streams"),
            self.fake,
            clock=Clock(),
            changes=link,
            reader=reader,
        )
        if p.streams is not None:
            p.streams.sleep = Sleeps()
            await p.streams.start()
            self.followers.append(p.streams)
        return p

    async def pair(self) -> tuple[Proxy, Proxy, StreamFollower]:
        """The reader and another worker, both linked before either publishes."""
        link_a, link_b = await self.link(), await self.link()
        a, b = await self.proxy(link_a, reader=True), await self.proxy(link_b, reader=False)
        assert a.streams is not None and b.streams is None
        return a, b, a.streams

    async def close(self) -> None:
        for follower in self.followers:
            await follower.close()
        for link in self.links:
            await link.close()
        await self.hub.close()


@pytest.fixture
async def group() -> AsyncIterator[Group]:
    directory = tempfile.mkdtemp(prefix="daxproxy-hub-")  # short: a socket path is < 108
    fake = StreamedDynamoDB(FakeTable("t"), FakeTable("u"))
    fake.put_direct("t", item("old"))
    fake.put_direct("u", item("old"))
    group = Group(os.path.join(directory, "changes"), fake)
    await group.hub.start()
    yield group
    await group.close()
    shutil.rmtree(directory)


async def followed(f: StreamFollower, arn: str) -> None:
    """Until the follower reads the table's stream from its end (its drop-at-start done)."""
    await until(lambda: arn in f.followed and f.followed[arn].complete_at is not None)


async def cached_in(p: Proxy, table: str = "t") -> None:
    """Read until the item is a hit (the first fill may be dropped by the drop-at-start)."""
    for _ in range(3):
        if (await get_in(p, table))[1] == "hit":
            return
    raise AssertionError("the item was never cached")


async def records(f: StreamFollower, count: int) -> None:
    await until(lambda: f.stats.records >= count)


async def test_a_change_the_reader_reads_evicts_the_item_and_pages_in_the_other_worker(
    group: Group,
) -> None:
    """Guards: applying ``changed`` evicts its keys and drops the table's pages in every
    mode (Coherence._apply_changed); the follower's applier publishes (SharedApplier)."""
    a, b, f = await group.pair()
    await get(a)
    await followed(f, T_ARN)
    await settled(a, b)
    await cached_in(b)
    await query(b)
    assert await query(b) == ([item("old")], "hit")
    group.fake.put_direct("t", item("new"))
    await records(f, 1)
    await settled(a, b)
    assert await get(b) == (item("new"), "miss")
    assert await query(b) == ([item("new")], "miss")  # not strict, and dropped all the same
    assert await get(a) == (item("new"), "miss")  # and here, as without workers


async def test_a_fill_in_the_other_worker_overtaken_by_a_change_is_not_stored(
    group: Group,
) -> None:
    """Guard: a change read from the stream is applied through the other worker's
    WriteTracker (Coherence._overtake in _apply_changed)."""
    a, b, f = await group.pair()
    await get(a)
    await followed(f, T_ARN)
    await settled(a, b)
    await cached_in(b)
    group.fake.put_direct("t", item("mid"))  # evicts it in b: the read below is a fill
    await records(f, 1)
    await settled(a, b)
    hold = group.fake.hold("GetItem")
    early = asyncio.create_task(get(b))  # has read "mid"; answers when released
    await hold.wait_reached()
    group.fake.put_direct("t", item("new"))
    await records(f, 2)
    await settled(a, b)
    hold.release()
    assert await early == (item("mid"), "miss")
    assert await get(b) == (item("new"), "miss")  # the overtaken fill was not stored


async def test_a_table_cached_only_by_another_worker_is_followed(group: Group) -> None:
    """Guards: a worker tells the reader each table it learns (``learned``) and the reader
    describes it, so its follower follows it (Coherence._apply_learned)."""
    a, b, f = await group.pair()
    await get_in(b, "u")  # a never reads u
    await followed(f, U_ARN)
    await settled(a, b)
    await cached_in(b, "u")
    group.fake.put_direct("u", item("new"))
    await records(f, 1)
    await settled(a, b)
    assert await get_in(b, "u") == (item("new"), "miss")


async def test_a_gap_in_the_readers_stream_drops_the_table_in_every_worker(
    group: Group,
) -> None:
    """Guard: TableUnsure is published as ``drop`` (SharedApplier)."""
    a, b, f = await group.pair()
    await get(a)
    await followed(f, T_ARN)
    await settled(a, b)
    await cached_in(b)
    gaps = f.stats.gaps
    group.fake.put_direct("t", item("new"))
    group.fake.trim("t")  # the record is gone before the follower read it: a gap
    await until(lambda: f.stats.gaps > gaps)
    await settled(a, b)
    assert f.stats.records == 0
    assert await get(b) == (item("new"), "miss")


async def test_a_reader_that_arrives_late_is_told_the_tables_learned_before(
    group: Group,
) -> None:
    """Guard: the reader announces itself and the others send it their tables again
    (Coherence.announce, _apply_reader): what a worker learned while no reader was there
    (worker 1 restarting) is followed, and what it cached meanwhile is dropped."""
    link_b = await group.link()
    b = await group.proxy(link_b, reader=False)
    await cached_in(b, "u")  # its ``learned`` reached no reader
    group.fake.put_direct("u", item("unseen"))  # no reader: b still serves "old"
    assert await get_in(b, "u") == (item("old"), "hit")
    a = await group.proxy(await group.link(), reader=True)
    assert a.streams is not None
    await followed(a.streams, U_ARN)
    await until(lambda: a.metrics is not None and a.metrics.changes_published["drop"] >= 1)
    await until(lambda: b.metrics is not None and b.metrics.changes_applied["drop"] >= 1)
    assert await get_in(b, "u") == (item("unseen"), "miss")  # the drop-at-start reached it
