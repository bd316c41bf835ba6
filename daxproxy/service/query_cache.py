"""Query and Scan from the query cache.

An eventually consistent Query or Scan whose canonical request (see
:mod:`daxproxy.core.query_requests`) the cache holds is answered from memory: the page as
DynamoDB gave it, LastEvaluatedKey included, with zero consumed capacity and a fresh request
id. A miss goes upstream and stores the page for ``query_ttl_millis``. Each page of a
paginated read is its own entry; empty pages are cached too. Hits and misses are counted
per operation (:attr:`QueryCache.hits`, :attr:`QueryCache.misses`), as DAX reports them.

Pages are keyed by the table's ARN (from the :class:`TableRegistry`), so every spelling of
a table shares its drops, and a request naming a table the upstream cannot describe (a
foreign ARN, a missing table) is forwarded, never answered from another table's pages.

DAX never invalidates cached queries on writes, and neither does ``mode = "dax"``: a page
can miss a write for up to its TTL. ``mode = "strict"`` drops a table's cached pages
whenever the proxy sees a write to it start or end, and after a write whose outcome is
unknown stores none of the table's pages until that write can no longer land
(``hold_seconds``). In both modes DeleteTable, UpdateTable, PartiQL writes and a table the
registry finds changed drop the table's pages. A fill that a drop overlapped is not stored.

With ``stale_grace_millis``, a miss whose upstream call fails (no answer, the breaker open,
or a 5xx; never a client error) is answered with the page past its TTL but within the
grace, exactly as cached, labelled ``stale``; in both modes, never a page stored before a
write to its table that the proxy saw.
"""

from __future__ import annotations

import orjson

from daxproxy.core.cache import ItemCache
from daxproxy.core.errors import DynamoDBError
from daxproxy.core.item_requests import Uncacheable, capacity_of
from daxproxy.core.keys import ItemKey
from daxproxy.core.query_requests import query_key, zero_capacity
from daxproxy.core.wire import WireResponse
from daxproxy.service.calls import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    Call,
    answer_json,
    built,
    forward,
    relay,
    stale,
    upstream_failed,
)
from daxproxy.service.tables import TableRegistry
from daxproxy.service.upstream import Upstream


class QueryCache:
    def __init__(
        self,
        upstream: Upstream,
        cache: ItemCache,
        tables: TableRegistry,
        *,
        strict: bool,
        hold_seconds: float = 0.0,
    ) -> None:
        self._upstream = upstream
        self.cache = cache
        self._tables = tables
        self.strict = strict
        self._hold_seconds = hold_seconds
        # Look-ups by operation: the cache's own statistics count Query and Scan together,
        # and DAX reports them apart (QueryCacheHits, ScanCacheHits...).
        self.hits = {"Query": 0, "Scan": 0}
        self.misses = {"Query": 0, "Scan": 0}
        # With a stale grace: when the proxy last saw a write to each table (ARN) start or end.
        self._written_at: dict[str, float] = {}

    async def read(self, call: Call) -> WireResponse:
        try:
            canonical = query_key(call.operation.name, call.payload)
        except Uncacheable:
            return relay(await forward(self._upstream, call), BYPASS)
        table = call.payload["TableName"]  # a non-empty string, as query_key checked
        info = self._tables.known(table) or await self._tables.get(table)
        if info is None:  # DynamoDB cannot describe it: its own error, or a foreign table
            return relay(await forward(self._upstream, call), BYPASS)
        key = (info.arn, canonical, None)
        cached = self.cache.get(key)
        if cached is not None:
            self.hits[call.operation.name] += 1
            return built(cached, HIT)
        self.misses[call.operation.name] += 1
        since = self.cache.generation()
        try:
            answer = await forward(self._upstream, call)
        except DynamoDBError as error:
            fallback = None if error.is_client_error else self._stale(key)
            if fallback is None:
                raise
            return fallback
        if upstream_failed(answer):
            return self._stale(key) or relay(answer, MISS)
        if answer.status == 200 and not self.cache.dropped_since(key[0], since):
            page = answer_json(answer)
            if capacity_of(call.payload) != "NONE" and "ConsumedCapacity" in page:
                page["ConsumedCapacity"] = zero_capacity(page["ConsumedCapacity"])
            self.cache.put(key, orjson.dumps(page), since=since)
        return relay(answer, MISS)

    def _stale(self, key: ItemKey) -> WireResponse | None:
        found = self.cache.get_stale(key)
        if found is None:
            return None
        page, expired_for = found
        written_at = self._written_at.get(key[0])
        ttl = self.cache.ttl
        if written_at is not None and ttl is not None and expired_for > 0:
            stored_at = self.cache.now() - expired_for - ttl
            if written_at >= stored_at:
                return None  # the page may predate a write the proxy saw
        self.cache.stats.stale_served += 1
        return stale(built(page, STALE), expired_for)

    def table_written(self, table: str) -> None:
        """A write to the table started or ended: only ``strict`` forgets its pages."""
        if self.strict:
            for arn in self._tables.matching(table):
                self.cache.drop_table(arn)
        elif self.cache.stale_grace:
            for arn in self._tables.matching(table):
                self._written_at[arn] = self.cache.now()

    def write_unsure(self, table: str) -> None:
        """A write to the table may land later: in ``strict`` mode, store none of its pages
        until it can no longer."""
        if self.strict:
            self.cache.hold(self._tables.matching(table), self._hold_seconds)

    def dropped(self, arn: str, *, unsure: bool = False) -> None:
        """Forget the pages of the table with this ARN: it was deleted or changed, or a
        PartiQL statement wrote to it (``unsure``: may still write to it, so store none of
        its pages until it can no longer)."""
        if unsure:
            self.cache.hold([arn], self._hold_seconds)
        else:
            self.cache.drop_table(arn)
        self._written_at.pop(arn, None)

    def drop_all(self, *, unsure: bool = False) -> None:
        """Forget every page (a write the proxy could not read went upstream)."""
        self.cache.drop_all()
        if unsure:
            self.cache.hold(self._tables.arns(), self._hold_seconds)
        self._written_at.clear()
