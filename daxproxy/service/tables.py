"""What the proxy knows of each table: its identity (ARN) and its key schema.

The item cache needs a table's key schema to turn a key, or a whole item, into a cache key;
it learns it once with DescribeTable and keeps it until the table is deleted or changed
through the proxy. A table may be named by its name or by its ARN; both resolve to the ARN,
so that a write by one spelling updates what a read by the other sees. Concurrent look-ups
of one table share one DescribeTable.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import orjson

from daxproxy.core import wire
from daxproxy.core.errors import DynamoDBError
from daxproxy.core.keys import KeySchema
from daxproxy.service.calls import OWN_HEADERS
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)

_DESCRIBE_TABLE = wire.Target("DynamoDB_20120810", "DescribeTable")


@dataclass(frozen=True, slots=True)
class TableInfo:
    arn: str  # the cache's name for the table: the same for every spelling of it
    schema: KeySchema
    # The key attributes of the table's secondary indexes: DynamoDB refuses a projection
    # that steps into one (a.b, a[0]), as it does for the table's own key.
    index_keys: frozenset[str] = frozenset()


class TableRegistry:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._known: dict[str, TableInfo] = {}
        self._pending: dict[str, asyncio.Future[TableInfo | None]] = {}

    def known(self, table: str) -> TableInfo | None:
        return self._known.get(table)

    async def get(self, table: str) -> TableInfo | None:
        """The table's info, or None when DynamoDB cannot describe it (let the request fail
        upstream with DynamoDB's own error)."""
        info = self._known.get(table)
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
        if info is not None:
            self._known[table] = info
        return info

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
        return TableInfo(sys.intern(str(arn)), schema, index_keys)

    def matching(self, table: str) -> set[str]:
        """The ARNs of the known tables that ``table`` (a name or an ARN) names."""
        return {
            info.arn
            for name, info in self._known.items()
            if table in (name, info.arn) or info.arn.endswith(":table/" + table)
        }

    def forget(self, table: str) -> set[str]:
        """Forget a table, by any spelling of it; the ARNs it was known by."""
        arns = self.matching(table)
        for name in [n for n, info in self._known.items() if info.arn in arns]:
            del self._known[name]
        return arns

    def arns(self) -> set[str]:
        """Every known table."""
        return {info.arn for info in self._known.values()}
