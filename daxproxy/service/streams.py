"""Following each cached table's DynamoDB Stream (``coherence = "streams"``).

The :class:`StreamFollower` hears from the :class:`~daxproxy.service.tables.TableRegistry`
of every table the proxy caches (:meth:`TableRegistry.on_learned`). A table whose
description has an enabled stream (``LatestStreamArn``) is followed by one task through the
upstream's Streams API (``DynamoDBStreams_20120810``: DescribeStream, GetShardIterator,
GetRecords, signed and sent as every upstream call); a table without one is served as with
``coherence = "none"`` and named once in a WARNING with the command that enables its stream.

Each followed table's stream is read by a :class:`~daxproxy.service.stream_shards.TableStream`
(its shards, its place in them, and what it does when it may have missed a change); what it
reads reaches the caches through one :class:`~daxproxy.service.stream_changes.Applier`.

Counted in :class:`StreamStats` (read at scrape time by the metrics), and per table by
:meth:`StreamFollower.tables_view` (``/admin/caches``). The clocks and the sleep
(:attr:`StreamFollower.sleep`, :attr:`StreamFollower.wall`) are injected for tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from daxproxy.core.errors import DynamoDBError
from daxproxy.core.tables import table_name
from daxproxy.core.wire import STREAMS_PREFIX, Target
from daxproxy.service.calls import OWN_HEADERS
from daxproxy.service.stream_changes import Applier, TableUnsure
from daxproxy.service.stream_shards import KINDS, UNAVAILABLE, StreamError, TableStream, epoch
from daxproxy.service.tables import TableInfo, TableRegistry
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)

IDLE = 0.25  # seconds between rounds that found nothing
BACKOFF, MAX_BACKOFF = 0.1, 5.0  # after a throttle or a failure, doubling
RECHECK = 60.0  # seconds between descriptions of a followed stream and its table
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
ENABLE_COMMAND = (
    "aws dynamodb update-table --table-name {name} "
    "--stream-specification StreamEnabled=true,StreamViewType=KEYS_ONLY"
)

Sleep = Callable[[float], Awaitable[None]]


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
        self.followed: dict[str, TableStream] = {}  # ARN -> the task following its stream
        self._retired: set[TableStream] = set()  # cancelled, perhaps not yet finished
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
        streams = [*self.followed.values(), *self._retired]
        self.followed, self._retired = {}, set()
        for stream in streams:
            await stream.stop()

    def _table_learned(self, info: TableInfo) -> None:
        self._learned[info.arn] = info
        if not self._running:
            return
        current = self.followed.get(info.arn)
        if current is not None and current.stream_arn == info.stream_arn:
            return
        if current is not None:  # another stream than the one read: its reader goes
            del self.followed[info.arn]
            self._retire(current)
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
        self.followed[info.arn] = TableStream(self, info)

    def _table_changed(self, arn: str) -> None:
        """The registry forgot the table (changed, gone, invalidated): its caches are
        dropped by the registry's listeners; it is followed again when learned again. A
        table still known by another spelling (only one was forgotten, the registry being
        full) is still cached, so it stays followed."""
        if arn in self._tables.arns():
            return
        self._learned.pop(arn, None)
        self.unfollowed.discard(arn)
        stream = self.followed.pop(arn, None)
        if stream is not None:
            self._retire(stream)

    def _retire(self, stream: TableStream) -> None:
        stream.cancel()
        self._retired = {s for s in self._retired if not s.finished}
        self._retired.add(stream)

    def gap(self, arn: str) -> None:
        self.stats.gaps += 1
        self.applier.apply(TableUnsure(arn))

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One Streams API call's answer; raises :class:`StreamError`."""
        try:
            answer = await self._upstream.send(
                Target(STREAMS_PREFIX, operation),
                orjson.dumps(payload),
                OWN_HEADERS,
                retry_safe=True,
            )
        except DynamoDBError:
            raise StreamError(UNAVAILABLE) from None
        try:
            body = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise StreamError(UNAVAILABLE) from None
        if answer.status != 200 or not isinstance(body, dict):
            code = body.get("__type", "") if isinstance(body, dict) else ""
            code = code.rsplit("#", 1)[-1] if isinstance(code, str) else ""
            kind = KINDS.get(code, UNAVAILABLE) if answer.status < 500 else UNAVAILABLE
            raise StreamError(kind)
        return body

    async def recheck_table(self, arn: str) -> None:
        """Describe the table again: a change reaches :meth:`_table_learned`."""
        await self._tables.recheck(arn)

    def lag(self, created: object) -> float | None:
        """Seconds from a record's ApproximateCreationDateTime to now (at least 0)."""
        when = epoch(created)
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
