"""Coherence through DynamoDB Streams (issue 15): a change made straight upstream is read
from the table's stream and evicts what it made untrue; whenever the follower may have
missed a change, the table's items and pages are dropped before they are served again.

The proxy is built by ``build_proxy`` with ``coherence = "streams"`` in front of
:class:`~tests.fake_streams.StreamedDynamoDB`; the follower's sleep yields to the event loop
once and records how long it was asked to sleep, so the follower runs as fast as the test
lets it and every wait below is for a condition, bounded in event-loop turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import orjson
import pytest

from daxproxy.core.config import Settings
from daxproxy.service.proxy import Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.stream_changes import Change, ItemsChanged
from daxproxy.service.stream_shards import REPOSITION_AFTER
from daxproxy.service.streams import BACKOFF, StreamFollower
from tests.fake_streams import StreamedDynamoDB
from tests.fakes import FakeTable
from tests.unit.test_coherence import (
    Clock,
    cache_of,
    get,
    get_request,
    handle,
    held_fill,
    item,
    query,
)

TURNS = 20_000  # event-loop turns a condition may take before the test fails


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


def streamed(fake: StreamedDynamoDB, **settings: Any) -> tuple[Proxy, StreamFollower, Sleeps]:
    p = build_proxy(
        Settings(upstream="http://127.0.0.1:1", coherence="streams", **settings),
        fake,
        clock=Clock(),
    )
    assert p.streams is not None
    sleeps = Sleeps()
    p.streams.sleep = sleeps
    return p, p.streams, sleeps


async def until(condition: Any) -> None:
    for _ in range(TURNS):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition was not met")


async def following(p: Proxy, f: StreamFollower) -> None:
    """Start the follower and read through the proxy until the table is followed and its
    item cached (the first fill may be dropped when the follower takes its place)."""
    await f.start()
    await get(p)
    await until(lambda: "arn:aws:dynamodb:us-east-1:123456789012:table/t" in f.followed)
    await until(lambda: all(s.complete_at is not None for s in f.followed.values()))
    for _ in range(3):
        if (await get(p))[1] == "hit":
            return
    raise AssertionError("the item was never cached")


async def applied(f: StreamFollower, records: int) -> None:
    await until(lambda: f.stats.records >= records)


@pytest.fixture
def fake() -> StreamedDynamoDB:
    fake = StreamedDynamoDB(FakeTable("t"))
    fake.put_direct("t", item("old"))
    return fake


async def test_a_change_straight_upstream_evicts_the_item(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("new"))
    await applied(f, 1)
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_a_change_straight_upstream_drops_the_tables_pages(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    await query(p)
    assert await query(p) == ([item("old")], "hit")
    fake.put_direct("t", item("new"))
    await applied(f, 1)
    assert await query(p) == ([item("new")], "miss")
    await f.close()


@pytest.mark.parametrize("operation", ["GetItem", "Query"])
async def test_a_fill_the_change_overtook_is_not_stored(
    fake: StreamedDynamoDB, operation: str
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("mid"))  # evicts the item: the read below is a fill
    await applied(f, 1)
    hold, task = await held_fill(fake, p, operation)  # read "old", answer held
    fake.put_direct("t", item("new"))
    await applied(f, 2)
    hold.release()
    await task
    if operation == "GetItem":
        assert await get(p) == (item("new"), "miss")
    else:
        assert (await query(p))[0] == [item("new")]
    await f.close()


async def test_what_was_cached_before_the_follower_took_its_place_is_dropped(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await get(p)
    assert await get(p) == (item("old"), "hit")  # cached, the follower not started
    fake.put_direct("t", item("new"))  # before the follower's LATEST: never read
    await f.start()
    await until(lambda: all(s.complete_at is not None for s in f.followed.values()) and f.followed)
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_children_are_read_after_their_parent_closed(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    seen: list[Change] = []
    local = f.applier

    class Recording:
        def apply(self, change: Change) -> None:
            seen.append(change)
            local.apply(change)

    f.applier = Recording()
    f.recheck = 0  # the stream is described every round: children are seen at once
    await following(p, f)
    fake.page = 1  # one record per GetRecords: the parent takes three rounds to read
    hold = fake.hold("GetRecords")  # the follower waits on the parent shard
    await hold.wait_reached()
    for pk in ("2", "3", "4"):
        fake.put_direct("t", item("parent", pk=pk))
    fake.split("t")
    fake.put_direct("t", item("child", pk="5"))
    hold.release()
    await applied(f, 4)
    keys = [change.keys[0][1] for change in seen if isinstance(change, ItemsChanged)]
    assert keys == ["2", "3", "4", "5"]  # the parent's records, then the child's
    assert len(next(iter(f.followed.values())).shards) == 2  # the children, still open
    await f.close()


async def test_a_shard_closing_beside_an_open_one_has_its_children_read(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    drops = f.stats.gaps
    fake.split("t")  # two children
    fake.put_direct("t", item("other", pk="2"))
    await applied(f, 1)
    assert len(next(iter(f.followed.values())).shards) == 2
    fake.split("t")  # the second child closes, the first stays open
    fake.put_direct("t", item("new"))  # on a grandchild
    await applied(f, 2)
    assert await get(p) == (item("new"), "miss")
    assert f.stats.gaps == drops  # read from their first records: nothing dropped
    await f.close()


async def test_a_stream_not_found_drops_the_table_before_following_again(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("new"))
    fake.fail("ResourceNotFoundException")  # answers the GetRecords that would read it
    hold = fake.hold("DescribeStream")  # the follower taking its place again
    await hold.wait_reached()
    assert f.stats.errors["not_found"] == 1
    assert await get(p) == (item("new"), "miss")
    hold.release()
    await until(lambda: all(s.complete_at is not None for s in f.followed.values()))
    await f.close()


async def test_an_expired_iterator_resumes_after_the_last_record(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("other", pk="2"))  # a record read: the follower knows where
    await applied(f, 1)
    assert await get(p) == (item("old"), "hit")
    drops = f.stats.gaps
    fake.expire_iterators()
    fake.put_direct("t", item("new"))
    await applied(f, 2)
    assert f.stats.errors["expired"] == 1 and f.stats.gaps == drops  # no gap: nothing dropped
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_an_expired_iterator_with_no_record_read_drops_the_table(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    drops = f.stats.gaps
    fake.put_direct("t", item("new"))  # after the old iterator: lost with it
    fake.expire_iterators()
    await until(lambda: f.stats.gaps > drops)
    assert f.stats.errors["expired"] == 1 and f.stats.records == 0
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_trimmed_records_drop_the_table(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    drops = f.stats.gaps
    fake.put_direct("t", item("new"))
    fake.trim("t")  # the record is gone before the follower read it
    await until(lambda: f.stats.gaps > drops)
    assert f.stats.errors["trimmed"] == 1 and f.stats.records == 0
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def caught_up(f: StreamFollower) -> None:
    """Wait for a round begun after now that read every shard of every followed stream to
    its end (the follower's clock, a :class:`Clock`, moves only here)."""
    assert isinstance(f.clock, Clock)
    f.clock.now += 1
    mark = f.clock.now

    def complete() -> bool:
        streams = f.followed.values()
        return bool(streams) and all((s.complete_at or 0) >= mark for s in streams)

    await until(complete)


async def test_a_child_trimmed_before_it_was_read_drops_the_table(
    fake: StreamedDynamoDB,
) -> None:
    """The example Hypothesis found in test_streams_stateful.py."""
    p, f, _ = streamed(fake)
    f.clock = Clock()
    await following(p, f)
    assert await get(p, "3") == (None, "miss")
    assert await get(p, "3") == (None, "hit")  # the item is absent: that is cached
    drops = f.stats.gaps
    fake.split("t")
    fake.put_direct("t", item("new", pk="3"))  # on a child the follower has not found yet
    fake.trim("t")  # gone before the follower reads it: TRIM_HORIZON would skip it
    fake.put_direct("t", item("other", pk="2"))  # after the trim horizon
    await caught_up(f)
    assert await get(p, "3") == (item("new", pk="3"), "miss")
    assert f.stats.gaps > drops and f.stats.errors["trimmed"] == 1
    assert f.stats.records == 1  # the child read from what is left, not from LATEST
    await f.close()


async def test_a_child_trimmed_before_its_expired_iterator_was_used_drops_the_table(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    f.clock = Clock()
    await following(p, f)
    fake.split("t")
    await caught_up(f)  # the children found, their iterators got, no record read on them
    assert len(next(iter(f.followed.values())).shards) == 2
    drops = f.stats.gaps
    fake.put_direct("t", item("new"))
    fake.trim("t")
    fake.expire_iterators()  # got again from the child's first record: trimmed
    await caught_up(f)
    assert await get(p) == (item("new"), "miss")
    assert f.stats.gaps > drops
    await f.close()


async def test_a_trimmed_shard_read_again_whose_iterator_expires_drops_the_table(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    f.clock = Clock()
    await following(p, f)
    fake.put_direct("t", item("other", pk="2"))
    fake.trim("t")  # the follower goes back to the trim horizon, no record read since
    await caught_up(f)
    assert f.stats.errors["trimmed"] == 1
    assert await get(p) == (item("old"), "miss")  # dropped by that gap: cached again
    drops = f.stats.gaps
    fake.put_direct("t", item("new"))
    fake.trim("t")
    fake.expire_iterators()  # its first record unknown: what was trimmed meanwhile too
    await caught_up(f)
    assert await get(p) == (item("new"), "miss")
    assert f.stats.gaps > drops
    await f.close()


async def test_throttling_backs_off_and_keeps_its_place(fake: StreamedDynamoDB) -> None:
    p, f, sleeps = streamed(fake)
    await following(p, f)
    drops = f.stats.gaps
    sleeps.clear()
    fake.fail("LimitExceededException", "LimitExceededException", "LimitExceededException")
    fake.put_direct("t", item("new"))
    await applied(f, 1)
    assert sleeps[:3] == [BACKOFF, BACKOFF * 2, BACKOFF * 4]
    assert f.stats.errors["throttled"] == 3 and f.stats.gaps == drops
    assert await get(p) == (item("new"), "miss")
    fake.fail("LimitExceededException")
    await until(lambda: f.stats.errors["throttled"] == 4)
    await until(lambda: len(sleeps) > 4)
    assert sleeps[4] == BACKOFF  # back to the first step after a good round
    await f.close()


async def test_an_expired_iterator_past_the_trim_horizon_drops_the_table(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("other", pk="2"))
    await applied(f, 1)
    drops = f.stats.gaps
    fake.put_direct("t", item("new"))
    fake.trim("t")  # after the last record read: no iterator can be got there
    fake.expire_iterators()
    await until(lambda: f.stats.gaps > drops)
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_the_upstream_not_answering_keeps_the_place(fake: StreamedDynamoDB) -> None:
    p, f, sleeps = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("other", pk="2"))
    await applied(f, 1)
    drops = f.stats.gaps
    sleeps.clear()
    hold = fake.hold("GetRecords", timeout=True)  # the request times out: no answer
    await hold.wait_reached()
    fake.put_direct("t", item("new"))
    hold.release()
    await applied(f, 2)
    assert f.stats.errors["unavailable"] == 1 and f.stats.gaps == drops
    assert sleeps[0] == BACKOFF
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_a_record_whose_keys_do_not_fit_drops_the_table_and_reading_goes_on(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    drops, iterators = f.stats.gaps, fake.count("GetShardIterator")
    shard = fake.streams["t"].open_shard
    record = {"dynamodb": {"Keys": {"id": {"N": "1"}}, "SequenceNumber": "1"}}
    shard.records.append(record)  # not this table's key schema
    table = fake.tables["t"]
    table.items[table.key_of(item("new"))] = item("new")  # a change its record hides
    await until(lambda: f.stats.gaps > drops)
    assert await get(p) == (item("new"), "miss")
    fake.put_direct("t", item("newer"))
    await applied(f, 1)
    assert await get(p) == (item("newer"), "miss")
    assert fake.count("GetShardIterator") == iterators  # its place kept
    await f.close()


async def test_iterators_failing_over_and_over_are_got_again(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("other", pk="2"))  # a record read: the follower knows where
    await applied(f, 1)
    drops = f.stats.gaps
    fake.lose_iterators()
    fake.put_direct("t", item("new"))
    await applied(f, 2)
    assert f.stats.errors["unavailable"] == REPOSITION_AFTER and f.stats.gaps == drops
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_iterators_that_cannot_be_got_again_leave_the_table_followed(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.put_direct("t", item("other", pk="2"))
    await applied(f, 1)
    stream = next(iter(f.followed.values()))
    # REPOSITION_AFTER failures in a row, then the GetShardIterator getting them again fails.
    fake.fail(*["InternalServerError"] * (REPOSITION_AFTER + 1))
    await until(lambda: stream.finished or f.stats.errors["unavailable"] > REPOSITION_AFTER)
    assert not stream.finished  # the failure counted and backed off from, not the end
    fake.put_direct("t", item("new"))
    await applied(f, 2)
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_a_stream_gone_drops_the_table_and_serves_it_as_without_coherence(
    fake: StreamedDynamoDB, caplog: pytest.LogCaptureFixture
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    fake.disable("t", gone=True)
    fake.put_direct("t", item("new"))  # no stream any more: never read
    with caplog.at_level(logging.WARNING):
        await until(lambda: not f.followed)
    assert f.stats.errors["not_found"] == 1
    assert await get(p) == (item("new"), "miss")
    assert await get(p) == (item("new"), "hit")  # cached as today
    command = (
        "aws dynamodb update-table --table-name t "
        "--stream-specification StreamEnabled=true,StreamViewType=KEYS_ONLY"
    )
    assert [r.getMessage().count(command) for r in caplog.records] == [1]
    assert f.unfollowed == {"arn:aws:dynamodb:us-east-1:123456789012:table/t"}
    await f.close()


async def test_a_new_stream_is_followed_afresh(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake)
    f.recheck = 0  # the table is described again every round
    await following(p, f)
    old = next(iter(f.followed.values()))
    fake.disable("t")  # the old stream stays readable, with nothing new on it
    fake.put_direct("t", item("lost"))
    new_arn = fake.enable("t")

    def following_new() -> bool:
        stream = f.followed.get(old.table)
        return stream is not None and stream.stream_arn == new_arn and bool(stream.complete_at)

    await until(following_new)
    assert await get(p) == (item("lost"), "miss")
    fake.put_direct("t", item("new"))
    await applied(f, 1)
    assert await get(p) == (item("new"), "miss")
    await f.close()


async def test_a_table_still_known_by_another_spelling_stays_followed() -> None:
    fake = StreamedDynamoDB(FakeTable("t"), FakeTable("u"))
    fake.put_direct("t", item("old"))
    p, f, _ = streamed(fake)
    arn = fake.tables["t"].arn
    p._tables._max_tables = 2  # the registry is full with two spellings
    await following(p, f)
    await get_in(p, arn)
    assert await get_in(p, arn) == (item("old"), "hit")
    await get_in(p, "u")  # "t", learned first, is forgotten; its ARN is not
    await get_in(p, arn)
    assert await get_in(p, arn) == (item("old"), "hit")
    fake.put_direct("t", item("new"))
    await applied(f, 1)
    assert await get_in(p, arn) == (item("new"), "miss")
    await f.close()


async def test_a_table_learned_with_another_stream_retires_the_old_reader(
    fake: StreamedDynamoDB,
) -> None:
    p, f, _ = streamed(fake)
    await following(p, f)
    old = next(iter(f.followed.values()))
    info = p._tables.known("t")
    assert info is not None
    f._table_learned(dataclasses.replace(info, stream_arn=fake.enable("t")))
    await until(lambda: old.finished)
    assert next(iter(f.followed.values())) is not old
    await f.close()


async def test_a_table_without_a_stream_is_served_as_today_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = StreamedDynamoDB(FakeTable("t"), streamed=())
    fake.put_direct("t", item("old"))
    p, f, _ = streamed(fake)
    await f.start()
    with caplog.at_level(logging.WARNING):
        assert await get(p) == (item("old"), "miss")
        assert await get(p) == (item("old"), "hit")
        p._tables.forget("t")  # learned again: still one warning
        await get(p)
    assert sum("StreamEnabled=true" in r.getMessage() for r in caplog.records) == 1
    assert not f.followed and fake.count("DescribeStream") == 0
    assert "daxproxy_stream_tables_without_stream 1.0" in _scrape(p)
    await f.close()


async def test_lag_metrics_and_the_admin_view(fake: StreamedDynamoDB) -> None:
    p, f, _ = streamed(fake, admin=True)
    f.wall = lambda: fake.wall() + 2.5
    await following(p, f)
    fake.put_direct("t", item("new"))
    await applied(f, 1)
    text = _scrape(p)
    assert 'daxproxy_stream_lag_seconds_bucket{le="2.0"} 0.0' in text
    assert 'daxproxy_stream_lag_seconds_bucket{le="5.0"} 1.0' in text
    assert "daxproxy_stream_records_applied_total 1.0" in text
    assert "daxproxy_stream_tables_followed 1.0" in text
    assert 'daxproxy_stream_seconds_behind{table="t"}' in text
    assert p.admin is not None
    view = p.admin.stats()["streams"]["arn:aws:dynamodb:us-east-1:123456789012:table/t"]
    assert view["followed"] is True and view["lag_seconds"] == 2.5
    await f.close()


def test_without_coherence_nothing_follows(fake: StreamedDynamoDB) -> None:
    p = build_proxy(Settings(upstream="http://127.0.0.1:1"), fake, clock=Clock())
    assert p.streams is None
    assert "daxproxy_stream" not in _scrape(p)


async def get_in(p: Proxy, table: str) -> tuple[Any, str]:
    answer = await handle(p, get_request(table=table))
    assert answer.status == 200, answer.body
    return orjson.loads(answer.body).get("Item"), cache_of(answer)


def _scrape(p: Proxy) -> str:
    from prometheus_client import generate_latest

    assert p.metrics is not None
    return generate_latest(p.metrics.registry).decode()
