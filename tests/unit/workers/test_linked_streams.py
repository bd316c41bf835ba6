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

import orjson
import pytest

from daxproxy.core.config import Settings
from daxproxy.core.wire import Headers, Target
from daxproxy.service.proxy import Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.streams import StreamFollower
from daxproxy.service.upstream import Upstream, UpstreamResponse
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
        self.learn_sleeps = Sleeps()

    async def link(self) -> ChangeLink:
        link = await ChangeLink.connect(self.path, len(self.links) + 1)
        self.links.append(link)
        return link

    async def proxy(
        self, link: ChangeLink, *, reader: bool, upstream: Upstream | None = None
    ) -> Proxy:
        p = build_proxy(
            Settings(upstream="http://127.0.0.1:1", coherence="streams"),
            upstream or self.fake,
            clock=Clock(),
            changes=link,
            reader=reader,
        )
        assert p.coherence is not None
        p.coherence.sleep = self.learn_sleeps
        if p.streams is not None:
            p.streams.sleep = Sleeps()
            await p.streams.start()
            self.followers.append(p.streams)
        return p

    async def pair(self) -> tuple[Proxy, Proxy, StreamFollower]:
        """The reader and another worker, both linked before either publishes, the reader's
        announcement applied."""
        link_a, link_b = await self.link(), await self.link()
        a, b = await self.proxy(link_a, reader=True), await self.proxy(link_b, reader=False)
        assert a.streams is not None and b.streams is None
        await settled(a, b)
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


class DescribeFails:
    """The fake, but DescribeTable of ``table`` answers 500 (``times`` times; None: always)."""

    def __init__(self, fake: StreamedDynamoDB, table: str, times: int | None) -> None:
        self._fake = fake
        self._table = table
        self.times = times
        self.failed = 0

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        if (
            target.operation == "DescribeTable"
            and orjson.loads(body)["TableName"] == self._table
            and (self.times is None or self.failed < self.times)
        ):
            self.failed += 1
            return UpstreamResponse(500, [], b'{"__type":"InternalServerError"}')
        return await self._fake.send(target, body, headers, retry_safe=retry_safe)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


async def test_a_table_the_reader_cannot_describe_at_first_is_described_again(
    group: Group,
) -> None:
    """Guard: the reader tries a failed DescribeTable again, backing off (Coherence._learn)."""
    upstream = DescribeFails(group.fake, "u", times=2)
    link_a, link_b = await group.link(), await group.link()
    a = await group.proxy(link_a, reader=True, upstream=upstream)
    b = await group.proxy(link_b, reader=False)
    await settled(a, b)
    assert a.streams is not None
    await get_in(b, "u")
    await followed(a.streams, U_ARN)
    assert upstream.failed == 2 and group.learn_sleeps[:2] == [0.1, 0.2]


class Gate:
    """A sleep that lasts until the test opens the gate."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await self.open.wait()


@pytest.mark.parametrize("how", ["forgotten", "reset"])
async def test_the_reader_stops_describing_a_table_the_others_forgot(
    group: Group, how: str
) -> None:
    """Guard: a table another worker forgot, or a reset (every worker forgets every table),
    stops the reader's DescribeTables of it (_stop_learning, in _apply_forgotten and
    _clear)."""
    upstream = DescribeFails(group.fake, "u", times=None)
    link_a, link_b = await group.link(), await group.link()
    a = await group.proxy(link_a, reader=True, upstream=upstream)
    b = await group.proxy(link_b, reader=False)
    await settled(a, b)
    assert a.coherence is not None and b.admin is not None
    gate = a.coherence.sleep = Gate()
    await get_in(b, "u")
    await until(lambda: gate.calls == [0.1])  # failed once, waiting to try again
    if how == "forgotten":
        await b.admin.invalidate({"table": "u"})  # b forgets u, and tells the others
        await settled(a, b)
    else:
        a.coherence.missed()  # what a's link does when another worker's changes were lost
    gate.open.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert upstream.failed == 1


async def test_a_table_learned_twice_is_described_by_one_task(group: Group) -> None:
    """Guard: a table the reader is already describing is not described twice
    (Coherence._apply_learned)."""
    upstream = DescribeFails(group.fake, "u", times=None)
    links = [await group.link() for _ in range(3)]
    a = await group.proxy(links[0], reader=True, upstream=upstream)
    b = await group.proxy(links[1], reader=False)
    c = await group.proxy(links[2], reader=False)
    await settled(a, b, c)  # the reader's announcement: b and c have no tables to tell
    assert a.coherence is not None
    gate = a.coherence.sleep = Gate()
    await get_in(b, "u")
    await get_in(c, "u")
    await settled(a, b, c)
    await until(lambda: gate.calls == [0.1])
    for _ in range(100):
        await asyncio.sleep(0)
    assert gate.calls == [0.1] and upstream.failed == 1
    await a.coherence.close()
