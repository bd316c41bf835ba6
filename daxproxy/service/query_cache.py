"""Query and Scan from the query cache.

An eventually consistent Query or Scan whose canonical request (see
:mod:`daxproxy.core.query_requests`) the cache holds is answered from memory: the page as
DynamoDB gave it, LastEvaluatedKey included, with zero consumed capacity and a fresh request
id. A miss goes upstream and stores the page for ``query_ttl_millis``. Each page of a
paginated read is its own entry; empty pages are cached too. Hits and misses are counted
per operation (:attr:`QueryCache.hits`, :attr:`QueryCache.misses`), as DAX reports them.

DAX never invalidates cached queries on writes, and neither does ``mode = "dax"``: a page
can miss a write for up to its TTL. ``mode = "strict"`` drops a table's cached pages
whenever the proxy sees a write to it start or end. In both modes DeleteTable, UpdateTable
and PartiQL writes drop the table's pages. A fill that a drop overlapped is not stored.

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
from daxproxy.core.query_requests import query_key, table_of, zero_capacity
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
from daxproxy.service.upstream import Upstream


class QueryCache:
    def __init__(self, upstream: Upstream, cache: ItemCache, *, strict: bool) -> None:
        self._upstream = upstream
        self.cache = cache
        self.strict = strict
        # Look-ups by operation: the cache's own statistics count Query and Scan together,
        # and DAX reports them apart (QueryCacheHits, ScanCacheHits...).
        self.hits = {"Query": 0, "Scan": 0}
        self.misses = {"Query": 0, "Scan": 0}
        # With a stale grace: when the proxy last saw a write to each table start or end.
        self._written_at: dict[str, float] = {}

    async def read(self, call: Call) -> WireResponse:
        try:
            key = (table_of(call.payload), query_key(call.operation.name, call.payload), None)
        except Uncacheable:
            return relay(await forward(self._upstream, call), BYPASS)
        cached = self.cache.get(key)
        if cached is not None:
            self.hits[call.operation.name] += 1
            return built(cached, HIT)
        self.misses[call.operation.name] += 1
        epoch = self.cache.epoch(key[0])
        try:
            answer = await forward(self._upstream, call)
        except DynamoDBError as error:
            fallback = None if error.is_client_error else self._stale(key)
            if fallback is None:
                raise
            return fallback
        if upstream_failed(answer):
            return self._stale(key) or relay(answer, MISS)
        if answer.status == 200 and self.cache.epoch(key[0]) == epoch:
            page = answer_json(answer)
            if capacity_of(call.payload) != "NONE" and "ConsumedCapacity" in page:
                page["ConsumedCapacity"] = zero_capacity(page["ConsumedCapacity"])
            self.cache.put(key, orjson.dumps(page))
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
            self.cache.drop_table(_name(table))
        elif self.cache.stale_grace:
            self._written_at[_name(table)] = self.cache.now()

    def table_changed(self, table: str) -> None:
        """The table was deleted or changed, or a PartiQL statement wrote to it."""
        self.cache.drop_table(_name(table))


def _name(table: str) -> str:
    return table.rsplit(":table/", 1)[-1]
