"""What the proxy knows of each table: its identity (ARN and table id) and its key schema.

The item cache needs a table's key schema to turn a key, or a whole item, into a cache key;
it learns it with DescribeTable and trusts it for at most ``max_age`` seconds, then looks
again. A table may be named by its name or by its ARN; both resolve to the ARN, so that a
write by one spelling updates what a read by the other sees. Concurrent look-ups of one
table share one DescribeTable.

A table that changes outside the proxy (deleted and re-created with another key schema, or
the same one: a new table id; its stream enabled, disabled or replaced) or disappears is
found out by the next look-up, and every listener (:meth:`TableRegistry.on_change`: the
caches) then forgets what it holds of it. :meth:`TableRegistry.on_learned` listeners (the
stream follower) hear of each table learned, or learned anew changed, and
:meth:`TableRegistry.recheck` describes a known table again at once.
:meth:`TableRegistry.suspect` brings that look-up forward when an answer hints at such a
change (ResourceNotFound, a ValidationException, a key that does not fit the schema), at
most once a second per table, so a client sending bad keys cannot turn each into a
DescribeTable (whose rate DynamoDB limits). At most ``max_tables`` spellings are remembered; the one
learned longest ago goes first, and its table's caches go with it, since a change to it
could no longer be seen.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from daxproxy.core import wire
from daxproxy.core.errors import DynamoDBError
from daxproxy.core.keys import KeySchema
from daxproxy.core.tables import table_name
from daxproxy.service.calls import OWN_HEADERS
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)

_DESCRIBE_TABLE = wire.Target("DynamoDB_20120810", "DescribeTable")
# How long a table's description is trusted, how many spellings are remembered, and how
# soon after one suspicion of a table another may cause a look-up.
MAX_AGE = 60.0
MAX_TABLES = 10_000
SUSPECT_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class TableInfo:
    arn: str  # the cache's name for the table: the same for every spelling of it
    schema: KeySchema
    # The key attributes of the table's secondary indexes: DynamoDB refuses a projection
    # that steps into one (a.b, a[0]), as it does for the table's own key.
    index_keys: frozenset[str] = frozenset()
    # Which incarnation of the table: a table deleted and created again has a new one.
    table_id: str | None = None
    # The table's DynamoDB Stream while one is enabled (LatestStreamArn); None: no stream.
    stream_arn: str | None = None


class TableRegistry:
    def __init__(
        self,
        upstream: Upstream,
        *,
        max_age: float = MAX_AGE,
        max_tables: int = MAX_TABLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._max_age = max_age
        self._max_tables = max_tables
        self._clock = clock
        # Spelling -> (info, when it was learned), oldest learned first.
        self._known: OrderedDict[str, tuple[TableInfo, float]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[TableInfo | None]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._learners: list[Callable[[TableInfo], None]] = []
        self._suspected: dict[str, float] = {}  # ARN -> when a suspicion last counted

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(arn)`` whenever a known table is found changed, gone or forgotten."""
        self._listeners.append(listener)

    def on_learned(self, listener: Callable[[TableInfo], None]) -> None:
        """Call ``listener(info)`` whenever a table is learned, or learned anew changed."""
        self._learners.append(listener)

    def known(self, table: str) -> TableInfo | None:
        """The table's info while it is fresh; None when it must be looked up (:meth:`get`)."""
        entry = self._known.get(table)
        if entry is None or self._clock() - entry[1] >= self._max_age:
            return None
        return entry[0]

    async def get(self, table: str) -> TableInfo | None:
        """The table's info, or None when DynamoDB cannot describe it (let the request fail
        upstream with DynamoDB's own error)."""
        info = self.known(table)
        if info is not None:
            return info
        pending = self._pending.get(table)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TableInfo | None] = asyncio.get_running_loop().create_future()
        self._pending[table] = future
        try:
            info = await self._describe(table)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            del self._pending[table]
        if not future.done():
            future.set_result(info)
        self._learned(table, info)
        return info

    def _learned(self, table: str, info: TableInfo | None) -> None:
        old = self._known.get(table)
        if old is not None and old[0] != info:
            log.info("a table changed or disappeared outside the proxy; its caches are dropped")
            self.forget(old[0].arn)  # every spelling of it
        self._known.pop(table, None)
        if info is None:
            return
        self._known[table] = (info, self._clock())
        while len(self._known) > self._max_tables:
            _, (oldest, _) = self._known.popitem(last=False)
            self._changed(oldest.arn)
        if old is None or old[0] != info:
            for learner in self._learners:
                learner(info)

    async def recheck(self, arn: str) -> TableInfo | None:
        """Describe the table known by ``arn`` again now (a change is told to the
        listeners); None when it is not known or cannot be described."""
        spellings = [name for name, (info, _) in self._known.items() if info.arn == arn]
        if not spellings:
            return None
        for name in spellings:
            self._known[name] = (self._known[name][0], float("-inf"))
        return await self.get(spellings[0])

    def suspect(self, table: object) -> None:
        """An answer hints that ``table`` changed: look it up again before its next use,
        unless a suspicion of it counted within the last second."""
        if not isinstance(table, str) or table not in self._known:
            return
        arn, now = self._known[table][0].arn, self._clock()
        if now - self._suspected.get(arn, float("-inf")) < SUSPECT_AFTER:
            return
        self._suspected[arn] = now
        for name, (info, _) in self._known.items():
            if info.arn == arn:
                self._known[name] = (info, float("-inf"))

    async def _describe(self, table: str) -> TableInfo | None:
        try:
            answer = await self._upstream.send(
                _DESCRIBE_TABLE, orjson.dumps({"TableName": table}), OWN_HEADERS, retry_safe=True
            )
        except DynamoDBError:
            return None
        if answer.status != 200:
            return None
        try:
            description = orjson.loads(answer.body)["Table"]
            schema = KeySchema.from_description(description)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("DescribeTable gave an answer without a usable key schema")
            return None
        arn = description.get("TableArn") or description.get("TableName") or table
        indexes = [
            *description.get("GlobalSecondaryIndexes", []),
            *description.get("LocalSecondaryIndexes", []),
        ]
        index_keys = frozenset(k["AttributeName"] for i in indexes for k in i.get("KeySchema", []))
        incarnation = description.get("TableId") or description.get("CreationDateTime")
        table_id = None if incarnation is None else str(incarnation)
        return TableInfo(sys.intern(str(arn)), schema, index_keys, table_id, _stream(description))

    def matching(self, table: str) -> set[str]:
        """The ARNs of the known tables that ``table`` (a name or an ARN, of the table or of
        a part of it) may name: by name alone when it is not a known spelling, so another
        account's table of the same name counts too (the careful side for a drop)."""
        entry = self._known.get(table)
        if entry is not None:
            return {entry[0].arn}
        name = table_name(table)
        return {info.arn for info, _ in self._known.values() if table_name(info.arn) == name}

    def forget(self, table: str) -> set[str]:
        """Forget a table, by any spelling of it; the ARNs it was known by. The listeners
        hear of each."""
        name = table_name(table)
        arns = {
            info.arn
            for spelling, (info, _) in self._known.items()
            if table_name(spelling) == name or table_name(info.arn) == name
        }
        for spelling in [n for n, (info, _) in self._known.items() if info.arn in arns]:
            del self._known[spelling]
        for arn in arns:
            self._changed(arn)
        return arns

    def _changed(self, arn: str) -> None:
        self._suspected.pop(arn, None)
        for listener in self._listeners:
            listener(arn)

    def arns(self) -> set[str]:
        """Every known table."""
        return {info.arn for info, _ in self._known.values()}


def _stream(description: dict[str, object]) -> str | None:
    """The ARN of the table's stream while it is enabled."""
    spec = description.get("StreamSpecification")
    arn = description.get("LatestStreamArn")
    if isinstance(spec, dict) and spec.get("StreamEnabled") is True and isinstance(arn, str):
        return arn
    return None
