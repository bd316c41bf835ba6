"""One table's DynamoDB Stream, read by one task (:class:`TableStream`) for the
:class:`~daxproxy.service.streams.StreamFollower`.

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
  read yet, at the shard's first record if the shard was begun there (below), else where it
  was begun (LATEST, TRIM_HORIZON) and a gap: what came meanwhile is unknown;
- ``TrimmedDataAccessException``: the records are gone: the shard is read again from its
  oldest record (TRIM_HORIZON), a gap;
- ``ResourceNotFoundException`` (the stream disabled, the table deleted), a key the table's
  schema cannot read, or an iterator that cannot be got again (expired or trimmed
  there too): a gap; after ResourceNotFound the table is described again (a new stream or
  table is then followed afresh, and a table without a stream is no longer followed); if
  unchanged, it is followed again from LATEST after a back-off.

Throttling (``LimitExceededException``; DynamoDB allows about two readers per shard), a 5xx
or no answer leave the iterator as it was and back off (doubling from ``backoff`` to
``max_backoff``); the table is then *behind*, not gapped: every change is still read once
the upstream answers, and ``seconds_behind`` says since when nothing is known. After
:data:`REPOSITION_AFTER` such failures in a row (throttling aside) every shard's iterator is
got again after its last record read, in case the iterators are what fails (moto answers
500 for one it does not know).

Shards: a shard that closes (no ``NextShardIterator``) is read to its end, then the stream is
described again and its children (``ParentShardId``) are read from their first record
(``AT_SEQUENCE_NUMBER`` at its ``StartingSequenceNumber``, never TRIM_HORIZON, which would
silently skip records trimmed before the child was found: refused as trimmed, or with no
starting number, the child is read from TRIM_HORIZON and that is a gap); a shard whose
parent is still being read waits for it. Every ``recheck`` seconds, and when no
shard is left open, the stream and the table are described again (new shards, a stream
disabled or replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daxproxy.core.keys import ItemKey, NotCanonical, item_key
from daxproxy.service.stream_changes import ItemsChanged

if TYPE_CHECKING:
    from daxproxy.service.streams import StreamFollower
    from daxproxy.service.tables import TableInfo

log = logging.getLogger(__name__)

PAGE = 1000  # GetRecords' most records per call
# Failures in a row (5xx, no answer, an iterator refused) after which every shard's iterator
# is got again: about 1.5 s of back-off.
REPOSITION_AFTER = 4
# Iterator errors, by kind (the label of daxproxy_stream_iterator_errors_total).
EXPIRED, TRIMMED, THROTTLED, NOT_FOUND, UNAVAILABLE = (
    "expired",
    "trimmed",
    "throttled",
    "not_found",
    "unavailable",
)
ERROR_KINDS = (EXPIRED, TRIMMED, THROTTLED, NOT_FOUND, UNAVAILABLE)
# The Streams API's error types, by kind.
KINDS = {
    "ExpiredIteratorException": EXPIRED,
    "ValidationException": EXPIRED,  # an iterator the server no longer knows
    "TrimmedDataAccessException": TRIMMED,
    "LimitExceededException": THROTTLED,
    "ThrottlingException": THROTTLED,
    "ProvisionedThroughputExceededException": THROTTLED,
    "RequestLimitExceeded": THROTTLED,
    "ResourceNotFoundException": NOT_FOUND,
}


class Replaced(Exception):
    """The table's stream is no longer this task's to follow (a new stream, or none)."""


class StreamError(Exception):
    """A Streams API call failed: ``kind`` is one of the iterator error kinds."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class Shard:
    id: str
    iterator: str | None = None
    start: str = "LATEST"  # where its iterator was first got: LATEST or TRIM_HORIZON, or
    first: str | None = None  # at this sequence number (AT_SEQUENCE_NUMBER): its first record
    last: str | None = None  # the sequence number of the last record read


class TableStream:
    """One table's stream, read by one task."""

    def __init__(self, follower: StreamFollower, info: TableInfo) -> None:
        self._f = follower
        self.table = info.arn
        self.schema = info.schema
        self.stream_arn = info.stream_arn or ""
        self.shards: dict[str, Shard] = {}  # being read, in the order found
        self.done: set[str] = set()  # closed and read to the end, or closed before we began
        self.orphans: set[str] = set()  # read to their end, their children not yet found
        self.complete_at: float | None = None  # every change made before then is applied
        self.last_lag: float | None = None
        self._delay = follower.backoff
        self._failures = 0  # in a row, throttling aside
        self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        self._task.cancel()

    @property
    def finished(self) -> bool:
        return self._task.done()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        with contextlib.suppress(Replaced):
            await self._loop()

    async def _recheck(self) -> None:
        """Describe the table again; raises :class:`Replaced` when its stream changed."""
        await self._f.recheck_table(self.table)
        if self._f.followed.get(self.table) is not self:
            raise Replaced

    async def _loop(self) -> None:
        """Every call that may fail is made inside the ``try``: a failure while recovering
        from one is handled as any other, never the end of the task."""
        f = self._f
        positioned = recheck = False
        while True:
            try:
                if recheck:
                    await self._recheck()
                    recheck = False
                if not positioned:
                    await self._position()
                    positioned = True
                elif self._failures >= REPOSITION_AFTER:
                    # The iterators themselves may be what fails (a server that lost them
                    # answers 500): got again, after the last record read.
                    self._failures = 0
                    for shard in list(self.shards.values()):
                        await self._reposition(shard)
                await self._follow()
            except StreamError as error:  # throttled or unavailable: the iterators stay
                f.stats.errors[error.kind] += 1
                if error.kind != THROTTLED:
                    self._failures += 1
                if error.kind in (NOT_FOUND, EXPIRED, TRIMMED):  # the place in it is lost
                    positioned = False
                    self._lost()
                    recheck = recheck or error.kind == NOT_FOUND
                await self._back_off()
            except Replaced:
                raise
            except Exception as exc:  # a bug must not stop coherence silently: start again
                # The type only: a message could quote a record's keys.
                log.error(
                    "following a table's stream failed (%s); its caches are dropped",
                    type(exc).__name__,
                )
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
        self.orphans.clear()
        for described in await self._describe():
            if "EndingSequenceNumber" in described.get("SequenceNumberRange", {}):
                self.done.add(described["ShardId"])
            else:
                self.shards[described["ShardId"]] = Shard(described["ShardId"])
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
            raise StreamError(UNAVAILABLE)
        return iterator

    async def _follow(self) -> None:
        f = self._f
        rechecked = f.clock()
        while True:
            started = f.clock()
            found = behind = 0
            for shard in list(self.shards.values()):
                read = await self._read(shard)
                found += read
                behind += read >= PAGE  # more may be waiting
            adopted = 0
            due = f.clock() - rechecked >= f.recheck
            if due or not self.shards:
                rechecked = f.clock()
                await self._recheck()
            if due or self.orphans or not self.shards:
                adopted = await self._adopt()
            if self.shards and not (behind or adopted or self.orphans):
                self.complete_at = started  # every shard read to its end since then
            self._delay, self._failures = f.backoff, 0
            if not found:
                await f.sleep(f.idle)

    async def _read(self, shard: Shard) -> int:
        """One GetRecords on the shard; how many records it gave."""
        f = self._f
        try:
            answer = await f.call("GetRecords", {"ShardIterator": shard.iterator, "Limit": PAGE})
        except StreamError as error:
            if error.kind == EXPIRED:
                f.stats.errors[EXPIRED] += 1
                await self._reposition(shard)
                return PAGE  # not known to be at its end
            if error.kind == TRIMMED:
                f.stats.errors[TRIMMED] += 1
                shard.start, shard.first, shard.last = "TRIM_HORIZON", None, None
                await self._reposition(shard)  # a gap
                return PAGE
            raise
        records = answer.get("Records")
        records = records if isinstance(records, list) else []
        self._apply(records)
        if records and isinstance(records[-1], dict):
            shard.last = records[-1].get("dynamodb", {}).get("SequenceNumber", shard.last)
        following = answer.get("NextShardIterator")
        if following is None:  # closed, and read to its end: its children come next
            del self.shards[shard.id]
            self.done.add(shard.id)
            self.orphans.add(shard.id)
        else:
            shard.iterator = following
        return len(records)

    async def _reposition(self, shard: Shard) -> None:
        """The shard's iterator at its first record not read; a gap if that is unknown."""
        if shard.last is not None:
            shard.iterator = await self._iterator(shard.id, "AFTER_SEQUENCE_NUMBER", shard.last)
            return
        if shard.first is not None:
            try:
                shard.iterator = await self._iterator(shard.id, "AT_SEQUENCE_NUMBER", shard.first)
                return
            except StreamError as error:
                if error.kind != TRIMMED:
                    raise
                self._f.stats.errors[TRIMMED] += 1
                shard.start, shard.first = "TRIM_HORIZON", None
        # Where it was begun again (LATEST, TRIM_HORIZON): what came, or was trimmed,
        # between the two is unknown.
        shard.iterator = await self._iterator(shard.id, shard.start)
        self._f.gap(self.table)

    async def _adopt(self) -> int:
        """Read the stream's new shards from their first record, each after its parent;
        how many. A closed shard stays an orphan until a child of it is seen."""
        known = self.done | set(self.shards)
        adopted = 0
        described = await self._describe()
        for shard in described:
            shard_id, parent = shard["ShardId"], shard.get("ParentShardId")
            if shard_id in known or parent in self.shards:
                continue
            first = shard.get("SequenceNumberRange", {}).get("StartingSequenceNumber")
            new = Shard(shard_id, start="TRIM_HORIZON", first=first)
            await self._reposition(new)
            self.shards[shard_id] = new
            adopted += 1
        self.orphans -= {shard.get("ParentShardId") for shard in described}
        return adopted

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


def epoch(value: object) -> float | None:
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
