"""A :class:`~tests.fakes.HeldDynamoDB` with DynamoDB Streams: every change to a streamed
table's items (through the proxy or :meth:`put_direct`) becomes a KEYS_ONLY record on the
table's open shard, served by DescribeStream, GetShardIterator and GetRecords.

The test's controls do what a real stream does at its own pace: :meth:`split` closes the
open shard and opens children, :meth:`trim` makes the records read so far gone
(TrimmedDataAccessException for an iterator before them), :meth:`expire_iterators`
(ExpiredIteratorException), :meth:`fail` (the next Streams calls answer these errors, e.g.
LimitExceededException), :meth:`disable` (no stream in DescribeTable; with ``gone``, the old
stream's calls answer ResourceNotFoundException) and :meth:`enable` (a new stream ARN).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import FakeTable, HeldDynamoDB, Hold, _Refused

_labels = itertools.count(1)
_STREAM_OPERATIONS = frozenset({"DescribeStream", "GetShardIterator", "GetRecords"})


@dataclass
class FakeShard:
    id: str
    parent: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    first: int = 100  # the first record's sequence number
    closed: bool = False
    trimmed: int = 0  # records before this index are gone


@dataclass
class FakeStream:
    arn: str
    shards: list[FakeShard]
    gone: bool = False

    @property
    def open_shard(self) -> FakeShard:
        return next(shard for shard in reversed(self.shards) if not shard.closed)


class StreamedDynamoDB(HeldDynamoDB):
    """``streamed``: the names of the tables with a stream (default: every table)."""

    def __init__(
        self,
        *tables: FakeTable,
        streamed: tuple[str, ...] | None = None,
        wall: Callable[[], float] = lambda: 1_700_000_000.0,
    ) -> None:
        super().__init__(*tables)
        self.wall = wall
        self.streams: dict[str, FakeStream] = {}
        self._iterators: dict[str, tuple[FakeStream, FakeShard, int]] = {}
        self._failures: list[str] = []
        self._lost: set[str] = set()
        self.page: int | None = None  # GetRecords gives at most this many (None: as asked)
        self._sequence = itertools.count(1000)
        for name in self.tables if streamed is None else streamed:
            self.enable(name)

    # The test's controls ---------------------------------------------------------------

    def enable(self, name: str) -> str:
        """A new stream for the table; its ARN."""
        arn = f"{self.tables[name].arn}/stream/label-{next(_labels)}"
        self.streams[name] = FakeStream(arn, [FakeShard(f"shard-{next(_labels)}")])
        return arn

    def disable(self, name: str, *, gone: bool = False) -> None:
        stream = self.streams.pop(name)
        stream.gone = gone

    def split(self, name: str, children: int = 2) -> list[str]:
        """Close the open shard; open ``children`` shards whose parent it is."""
        stream = self.streams[name]
        parent = stream.open_shard
        parent.closed = True
        new = [FakeShard(f"shard-{next(_labels)}", parent.id) for _ in range(children)]
        stream.shards.extend(new)
        return [shard.id for shard in new]

    def trim(self, name: str) -> None:
        for shard in self.streams[name].shards:
            shard.trimmed = len(shard.records)

    def expire_iterators(self) -> None:
        self._iterators.clear()

    def lose_iterators(self) -> None:
        """The iterators given so far get a 500 from now on, as from a server that lost
        them (moto answers so for an iterator it does not know)."""
        self._lost.update(self._iterators)

    def fail(self, *codes: str) -> None:
        """The next Streams calls answer these errors (400s), one each."""
        self._failures.extend(codes)

    def records(self, name: str) -> int:
        return sum(len(shard.records) for shard in self.streams[name].shards)

    def put_direct(self, table: str, item: dict[str, Any]) -> None:
        before = self._snapshot()
        super().put_direct(table, item)
        self._record(before)

    # DynamoDB ----------------------------------------------------------------------------

    def _answer(self, operation: str, payload: dict[str, Any], held: Hold | None) -> dict[str, Any]:
        if operation in _STREAM_OPERATIONS:
            if self._failures:
                raise _Refused(self._failures.pop(0))
            return self._stream_answer(operation, payload)
        before = self._snapshot()
        try:
            answer = super()._answer(operation, payload, held)
        finally:
            self._record(before)
        if operation == "DescribeTable":
            table = answer["Table"]
            stream = self.streams.get(table["TableName"])
            if stream is not None:
                table["LatestStreamArn"] = stream.arn
                table["StreamSpecification"] = {
                    "StreamEnabled": True,
                    "StreamViewType": "KEYS_ONLY",
                }
        return answer

    def _snapshot(self) -> dict[str, dict[tuple[str, ...], dict[str, Any]]]:
        return {name: dict(table.items) for name, table in self.tables.items()}

    def _record(self, before: dict[str, dict[tuple[str, ...], dict[str, Any]]]) -> None:
        for name, table in self.tables.items():
            stream = self.streams.get(name)
            if stream is None:
                continue
            old = before.get(name, {})
            for key in old.keys() | table.items.keys():
                if old.get(key) == table.items.get(key):
                    continue
                item = table.items.get(key) or old[key]
                keys = {attribute: item[attribute] for attribute in table.key_names}
                shard = stream.open_shard
                shard.records.append(
                    {
                        "eventName": "MODIFY",
                        "dynamodb": {
                            "Keys": keys,
                            "SequenceNumber": str(shard.first + len(shard.records)),
                            "ApproximateCreationDateTime": self.wall(),
                            "StreamViewType": "KEYS_ONLY",
                        },
                    }
                )

    def _stream(self, arn: object) -> FakeStream:
        for stream in self.streams.values():
            if stream.arn == arn:
                return stream
        raise _Refused("ResourceNotFoundException")

    def _stream_answer(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        if operation == "GetRecords":
            return self._get_records(payload)
        stream = self._stream(payload.get("StreamArn"))
        if operation == "DescribeStream":
            shards = []
            for shard in stream.shards:
                numbers = {"StartingSequenceNumber": str(shard.first)}
                if shard.closed:
                    numbers["EndingSequenceNumber"] = str(shard.first + len(shard.records))
                described = {"ShardId": shard.id, "SequenceNumberRange": numbers}
                if shard.parent is not None:
                    described["ParentShardId"] = shard.parent
                shards.append(described)
            return {"StreamDescription": {"StreamArn": stream.arn, "Shards": shards}}
        shard = next((s for s in stream.shards if s.id == payload.get("ShardId")), None)
        if shard is None:
            raise _Refused("ResourceNotFoundException")
        kind = payload.get("ShardIteratorType")
        if kind == "LATEST":
            position = len(shard.records)
        elif kind == "TRIM_HORIZON":
            position = shard.trimmed
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            position = int(payload["SequenceNumber"]) - shard.first
            position += kind == "AFTER_SEQUENCE_NUMBER"
            if position < shard.trimmed:
                raise _Refused("TrimmedDataAccessException")
        else:
            raise _Refused("ValidationException")
        return {"ShardIterator": self._iterator(stream, shard, position)}

    def _iterator(self, stream: FakeStream, shard: FakeShard, position: int) -> str:
        iterator = f"iterator-{next(self._sequence)}"
        self._iterators[iterator] = (stream, shard, position)
        return iterator

    def _get_records(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("ShardIterator") in self._lost:
            raise _Refused("InternalServerError")
        found = self._iterators.pop(payload.get("ShardIterator"), None)
        if found is None:
            raise _Refused("ExpiredIteratorException")
        stream, shard, position = found
        if stream.gone:
            raise _Refused("ResourceNotFoundException")
        if position < shard.trimmed:
            raise _Refused("TrimmedDataAccessException")
        limit = int(payload.get("Limit", 1000))
        records = shard.records[position : position + min(limit, self.page or limit)]
        end = position + len(records)
        answer: dict[str, Any] = {"Records": records}
        if not (shard.closed and end == len(shard.records)):
            answer["NextShardIterator"] = self._iterator(stream, shard, end)
        return answer
