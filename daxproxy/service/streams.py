"""Following each cached table's DynamoDB Stream (``coherence = "streams"``).

The :class:`StreamFollower` hears from the :class:`~daxproxy.service.tables.TableRegistry`
of every table the proxy caches (:meth:`TableRegistry.on_learned`). A table whose
description has an enabled stream (``LatestStreamArn``) is followed by one task through the
upstream's Streams API (``DynamoDBStreams_20120810``: DescribeStream, GetShardIterator,
GetRecords, signed and sent as every upstream call); a table without one is served as with
``coherence = "none"`` and named once in a WARNING with the command that enables its stream.

The task reads every shard in turn with GetRecords; each page of records becomes one
:class:`~daxproxy.service.stream_changes.ItemsChanged` (the records' ``Keys``) for the
:class:`~daxproxy.service.stream_changes.Applier`. When a round finds nothing it sleeps
``idle`` seconds. Whenever the follower cannot be sure it saw every change of the table
from some moment on, it applies :class:`~daxproxy.service.stream_changes.TableUnsure` (the
table's items and pages are dropped, fills in flight too) once it has its place again:

- when it starts following (iterators at LATEST, open shards only): what was cached before
  may predate changes it will never read;
- an iterator that expired (``ExpiredIteratorException``, or refused as invalid) is got
  again just after the last record read (``AFTER_SEQUENCE_NUMBER``): no gap; with no record
  read yet on a LATEST shard, at LATEST again: a gap;
- ``TrimmedDataAccessException``: the records are gone: the shard is read again from its
  oldest record (TRIM_HORIZON), a gap;
- ``ResourceNotFoundException`` (the stream disabled, the table deleted) or a key the table's
  schema cannot read: a gap; the table is described again (a new stream or table is then
  followed afresh, and a table without a stream is no longer followed) and, if unchanged,
  followed again from LATEST after a back-off.

Throttling (``LimitExceededException``; DynamoDB allows about two readers per shard), a 5xx
or no answer leave the iterator as it was and back off (doubling from ``backoff`` to
``max_backoff``); the table is then *behind*, not gapped: every change is still read once
the upstream answers, and ``seconds_behind`` says since when nothing is known.

Shards: a shard that closes (no ``NextShardIterator``) is read to its end, then the stream is
described again and its children (``ParentShardId``) are read from their first record; a
shard whose parent is still being read waits for it. Every ``recheck`` seconds, and when no
shard is left open, the stream and the table are described again (new shards, a stream
disabled or replaced).

Counted in :class:`StreamStats` (read at scrape time by the metrics), and per table by
:meth:`StreamFollower.tables_view` (``/admin/caches``). The clocks and the sleep
(:attr:`StreamFollower.sleep`, :attr:`StreamFollower.wall`) are injected for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from daxproxy.core.errors import DynamoDBError
from daxproxy.core.keys import ItemKey, NotCanonical, item_key
from daxproxy.core.tables import table_name
from daxproxy.core.wire import STREAMS_PREFIX, Target
from daxproxy.service.calls import OWN_HEADERS
from daxproxy.service.stream_changes import Applier, ItemsChanged, TableUnsure
from daxproxy.service.tables import TableInfo, TableRegistry
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)

IDLE = 0.25  # seconds between rounds that found nothing
BACKOFF, MAX_BACKOFF = 0.1, 5.0  # after a throttle or a failure, doubling
RECHECK = 60.0  # seconds between descriptions of a followed stream and its table
PAGE = 1000  # GetRecords' most records per call
# Iterator errors, by kind (the label of daxproxy_stream_iterator_errors_total).
EXPIRED, TRIMMED, THROTTLED, NOT_FOUND, UNAVAILABLE = (
    "expired",
    "trimmed",
    "throttled",
    "not_found",
    "unavailable",
)
ERROR_KINDS = (EXPIRED, TRIMMED, THROTTLED, NOT_FOUND, UNAVAILABLE)
_KINDS = {
    "ExpiredIteratorException": EXPIRED,
    "ValidationException": EXPIRED,  # an iterator the server no longer knows
    "TrimmedDataAccessException": TRIMMED,
    "LimitExceededException": THROTTLED,
    "ThrottlingException": THROTTLED,
    "ProvisionedThroughputExceededException": THROTTLED,
    "RequestLimitExceeded": THROTTLED,
    "ResourceNotFoundException": NOT_FOUND,
}
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
ENABLE_COMMAND = (
    "aws dynamodb update-table --table-name {name} "
    "--stream-specification StreamEnabled=true,StreamViewType=KEYS_ONLY"
)

Sleep = Callable[[float], Awaitable[None]]


class _Replaced(Exception):
    """The table's stream is no longer this task's to follow (a new stream, or none)."""


class _StreamError(Exception):
    """A Streams API call failed: ``kind`` is one of the iterator error kinds."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class StreamStats:
    """The follower's counts, plain numbers read at scrape time."""

    lag_buckets: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    lag_count: int = 0
    lag_sum: float = 0.0
    records: int = 0  # records applied
    gaps: int = 0  # times a table's caches were dropped because a change may be unseen
    errors: Counter[str] = field(default_factory=Counter)  # iterator errors by kind

    def lag(self, seconds: float) -> None:
        index = next((i for i, b in enumerate(LAG_BUCKETS) if seconds <= b), len(LAG_BUCKETS))
        self.lag_buckets[index] += 1
        self.lag_count += 1
        self.lag_sum += seconds


@dataclass
class _Shard:
    id: str
    iterator: str | None = None
    start: str = "LATEST"  # where its iterator was first got: LATEST or TRIM_HORIZON
    last: str | None = None  # the sequence number of the last record read


class StreamFollower:
    """Follows the stream of every table the registry learns; see the module docstring."""

    def __init__(
        self,
        upstream: Upstream,
        tables: TableRegistry,
        applier: Applier,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        idle: float = IDLE,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        recheck: float = RECHECK,
    ) -> None:
        self._upstream = upstream
        self._tables = tables
        self.applier = applier
        self.sleep = sleep
        self.clock = clock
        self.wall = wall
        self.idle = idle
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.recheck = recheck
        self.stats = StreamStats()
        self._running = False
        self._learned: dict[str, TableInfo] = {}  # ARN -> its latest info
        self.followed: dict[str, _TableStream] = {}  # ARN -> the task following its stream
        self.unfollowed: set[str] = set()  # ARNs of tables without a stream
        self._warned: set[str] = set()  # of those, the ones named in a WARNING already
        tables.on_learned(self._table_learned)
        tables.on_change(self._table_changed)

    async def start(self) -> None:
        self._running = True
        for info in list(self._learned.values()):
            self._table_learned(info)

    async def close(self) -> None:
        self._running = False
        followed, self.followed = list(self.followed.values()), {}
        for stream in followed:
            await stream.stop()

    def _table_learned(self, info: TableInfo) -> None:
        self._learned[info.arn] = info
        if not self._running:
            return
        current = self.followed.get(info.arn)
        if current is not None and current.stream_arn == info.stream_arn:
            return
        if current is not None:  # the registry found the table changed: dropped already
            del self.followed[info.arn]
            current.cancel()
        if info.stream_arn is None:
            self.unfollowed.add(info.arn)
            if info.arn not in self._warned:
                self._warned.add(info.arn)
                name = table_name(info.arn)
                log.warning(
                    "coherence streams: table %s has no DynamoDB Stream, so a write that does "
                    "not go through this proxy is seen only when the TTL runs out; to enable "
                    "one: %s",
                    name,
                    ENABLE_COMMAND.format(name=name),
                )
            return
        self.unfollowed.discard(info.arn)
        self.followed[info.arn] = _TableStream(self, info)

    def _table_changed(self, arn: str) -> None:
        """The registry forgot the table (changed, gone, invalidated): its caches are
        dropped by the registry's listeners; it is followed again when learned again."""
        self._learned.pop(arn, None)
        self.unfollowed.discard(arn)
        stream = self.followed.pop(arn, None)
        if stream is not None:
            stream.cancel()

    def gap(self, arn: str) -> None:
        self.stats.gaps += 1
        self.applier.apply(TableUnsure(arn))

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One Streams API call's answer; raises :class:`_StreamError`."""
        try:
            answer = await self._upstream.send(
                Target(STREAMS_PREFIX, operation),
                orjson.dumps(payload),
                OWN_HEADERS,
                retry_safe=True,
            )
        except DynamoDBError:
            raise _StreamError(UNAVAILABLE) from None
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise _StreamError(UNAVAILABLE) from None
        if answer.status != 200 or not isinstance(body, dict):
            code = body.get("__type", "") if isinstance(body, dict) else ""
            code = code.rsplit("#", 1)[-1] if isinstance(code, str) else ""
            kind = _KINDS.get(code, UNAVAILABLE) if answer.status < 500 else UNAVAILABLE
            raise _StreamError(kind)
        return body

    async def recheck_table(self, arn: str) -> None:
        """Describe the table again: a change reaches :meth:`_table_learned`."""
        await self._tables.recheck(arn)

    def lag(self, created: object) -> float | None:
        """Seconds from a record's ApproximateCreationDateTime to now (at least 0)."""
        when = _epoch(created)
        if when is None:
            return None
        seconds = max(self.wall() - when, 0.0)
        self.stats.lag(seconds)
        return seconds

    def tables_view(self) -> dict[str, dict[str, Any]]:
        """Per table (ARN): whether followed, its last record's lag, how long behind."""
        view: dict[str, dict[str, Any]] = {arn: {"followed": False} for arn in self.unfollowed}
        now = self.clock()
        for arn, stream in self.followed.items():
            view[arn] = {
                "followed": True,
                "stream": stream.stream_arn,
                "lag_seconds": stream.last_lag,
                "seconds_behind": None if stream.complete_at is None else now - stream.complete_at,
            }
        return view


class _TableStream:
    """One table's stream, read by one task."""

    def __init__(self, follower: StreamFollower, info: TableInfo) -> None:
        self._f = follower
        self.table = info.arn
        self.schema = info.schema
        self.stream_arn = info.stream_arn or ""
        self.shards: dict[str, _Shard] = {}  # being read, in the order found
        self.done: set[str] = set()  # closed and read to the end, or closed before we began
        self.complete_at: float | None = None  # every change made before then is applied
        self.last_lag: float | None = None
        self._delay = follower.backoff
        self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        self._task.cancel()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        with contextlib.suppress(_Replaced):
            await self._loop()

    async def _recheck(self) -> None:
        """Describe the table again; raises :class:`_Replaced` when its stream changed."""
        await self._f.recheck_table(self.table)
        if self._f.followed.get(self.table) is not self:
            raise _Replaced

    async def _loop(self) -> None:
        f = self._f
        positioned = False
        while True:
            try:
                if not positioned:
                    await self._position()
                    positioned = True
                await self._follow()
            except _StreamError as error:  # throttled or unavailable: the iterators stay
                f.stats.errors[error.kind] += 1
                if error.kind == NOT_FOUND:
                    positioned = False
                    self._lost()
                    await self._recheck()
                await self._back_off()
            except _Replaced:
                raise
            except Exception:  # a bug must not stop coherence silently: start again
                log.exception("following a table's stream failed; its caches are dropped")
                positioned = False
                self._lost()
                await self._back_off()

    def _lost(self) -> None:
        self._f.gap(self.table)
        self.complete_at = None

    async def _back_off(self) -> None:
        await self._f.sleep(self._delay)
        self._delay = min(self._delay * 2, self._f.max_backoff)

    async def _position(self) -> None:
        """Iterators at LATEST on the open shards; then drop what was cached before."""
        started = self._f.clock()
        self.shards.clear()
        self.done.clear()
        for described in await self._describe():
            if "EndingSequenceNumber" in described.get("SequenceNumberRange", {}):
                self.done.add(described["ShardId"])
            else:
                self.shards[described["ShardId"]] = _Shard(described["ShardId"])
        for shard in self.shards.values():
            shard.iterator = await self._iterator(shard.id, "LATEST")
        self._f.gap(self.table)
        self.complete_at = started
        self._delay = self._f.backoff

    async def _describe(self) -> list[dict[str, Any]]:
        """Every shard of the stream (DescribeStream, page by page)."""
        shards: list[dict[str, Any]] = []
        payload: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = (await self._f.call("DescribeStream", payload)).get(
                "StreamDescription", {}
            )
            shards.extend(s for s in description.get("Shards", []) if "ShardId" in s)
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            payload = {"StreamArn": self.stream_arn, "ExclusiveStartShardId": last}

    async def _iterator(self, shard: str, kind: str, after: str | None = None) -> str:
        payload = {"StreamArn": self.stream_arn, "ShardId": shard, "ShardIteratorType": kind}
        if after is not None:
            payload["SequenceNumber"] = after
        iterator = (await self._f.call("GetShardIterator", payload)).get("ShardIterator")
        if not isinstance(iterator, str):
            raise _StreamError(UNAVAILABLE)
        return iterator

    async def _follow(self) -> None:
        f = self._f
        rechecked = f.clock()
        while True:
            started = f.clock()
            found = caught_up = 0
            for shard in list(self.shards.values()):
                read = await self._read(shard)
                found += read
                caught_up += read < PAGE
            if self.shards and caught_up == len(self.shards):
                self.complete_at = started
            self._delay = f.backoff
            if not self.shards or f.clock() - rechecked >= f.recheck:
                rechecked = f.clock()
                await self._recheck()
                await self._adopt()
            if not found:
                await f.sleep(f.idle)

    async def _read(self, shard: _Shard) -> int:
        """One GetRecords on the shard; how many records it gave."""
        f = self._f
        try:
            answer = await f.call("GetRecords", {"ShardIterator": shard.iterator, "Limit": PAGE})
        except _StreamError as error:
            if error.kind == EXPIRED:
                f.stats.errors[EXPIRED] += 1
                await self._reposition(shard)
                return 0
            if error.kind == TRIMMED:
                f.stats.errors[TRIMMED] += 1
                shard.iterator = await self._iterator(shard.id, "TRIM_HORIZON")
                shard.start, shard.last = "TRIM_HORIZON", None
                f.gap(self.table)
                return 0
            raise
        records = answer.get("Records") or []
        self._apply(records)
        if records:
            shard.last = records[-1].get("dynamodb", {}).get("SequenceNumber", shard.last)
        following = answer.get("NextShardIterator")
        if following is None:  # closed, and read to its end
            del self.shards[shard.id]
            self.done.add(shard.id)
            await self._adopt()
        else:
            shard.iterator = following
        return len(records)

    async def _reposition(self, shard: _Shard) -> None:
        if shard.last is not None:
            shard.iterator = await self._iterator(shard.id, "AFTER_SEQUENCE_NUMBER", shard.last)
            return
        shard.iterator = await self._iterator(shard.id, shard.start)
        if shard.start == "LATEST":  # what came between the two LATESTs is unknown
            self._f.gap(self.table)

    async def _adopt(self) -> None:
        """Read the stream's new shards from their first record, each after its parent."""
        known = self.done | set(self.shards)
        for shard in await self._describe():
            shard_id = shard["ShardId"]
            if shard_id in known or shard.get("ParentShardId") in self.shards:
                continue
            known.add(shard_id)
            new = _Shard(shard_id, start="TRIM_HORIZON")
            new.iterator = await self._iterator(shard_id, "TRIM_HORIZON")
            self.shards[shard_id] = new

    def _apply(self, records: list[Any]) -> None:
        f = self._f
        keys: list[ItemKey] = []
        lag = None
        for record in records:
            change = record.get("dynamodb", {}) if isinstance(record, dict) else {}
            try:
                keys.append(item_key(self.table, change.get("Keys"), self.schema))
            except NotCanonical:  # not this schema's key: the table may have changed
                f.gap(self.table)
                keys.clear()
                break
            lag = f.lag(change.get("ApproximateCreationDateTime"))
        if keys:
            f.applier.apply(ItemsChanged(self.table, tuple(keys)))
            f.stats.records += len(keys)
        if lag is not None:
            self.last_lag = lag


def _epoch(value: object) -> float | None:
    """ApproximateCreationDateTime as epoch seconds: a number, as DynamoDB sends it, or an
    ISO 8601 string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    return None
