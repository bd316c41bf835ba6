"""The operator's view of the caches, and the means to fix staleness without a restart.

:meth:`CacheAdmin.stats` reports, per cache, its entries, bytes and budget, hits, misses,
hit rate, TTL, evictions by reason and the tables whose drops it tracks; with
``coherence = "streams"``, per table whether its stream is followed and its lag.
:meth:`CacheAdmin.invalidate` drops one item (``{"table": T, "key": K}``), everything
known of one table (``{"table": T}``: its items, its query pages and its key schema) or
everything (``{"all": true}``), in every worker (``changes``). A request it cannot read
raises ValidationException. The edge serves both under ``/admin/`` when the ``admin``
setting is on.
"""

from __future__ import annotations

from typing import Any

from daxproxy.core.cache import ItemCache
from daxproxy.core.errors import ValidationException
from daxproxy.core.keys import NotCanonical, item_key
from daxproxy.service.coherence import NO_CHANGES, Changes
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.streams import StreamFollower
from daxproxy.service.tables import TableRegistry


def _cache_stats(cache: ItemCache) -> dict[str, Any]:
    stats = cache.stats
    lookups = stats.hits + stats.misses
    return {
        "entries": len(cache),
        "bytes": cache.bytes,
        "max_bytes": cache.max_bytes,
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_rate": stats.hits / lookups if lookups else None,
        "ttl_millis": None if cache.ttl is None else round(cache.ttl * 1000),
        "evicted": {reason.value: count for reason, count in stats.evicted.items()},
        "evicted_bytes": stats.evicted_bytes,
        # Tables whose drop the cache still remembers (bounded; see core/cache.py).
        "tracked_tables": cache.tracked_tables,
    }


class CacheAdmin:
    def __init__(
        self,
        items: ItemCache | None,
        queries: QueryCache | None,
        tables: TableRegistry,
        mode: str,
        *,
        changes: Changes = NO_CHANGES,
        streams: StreamFollower | None = None,
    ) -> None:
        self._changes = changes
        self._items = items
        self._queries = queries
        self._tables = tables
        self._mode = mode
        self._streams = streams

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self._mode,
            "item_cache": None if self._items is None else _cache_stats(self._items),
            "query_cache": None if self._queries is None else _cache_stats(self._queries.cache),
            "tables": sorted(self._tables.arns()),
            "coherence": "none" if self._streams is None else "streams",
            # Per table: whether its stream is followed, its last record's lag, and how
            # long since every change to it was known applied.
            "streams": None if self._streams is None else self._streams.tables_view(),
        }

    async def invalidate(self, request: object) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise ValidationException("expected a JSON object: {all}, {table} or {table, key}")
        if request.get("all") is True and request.keys() == {"all"}:
            self._drop_all()
            return {"invalidated": "all"}
        table = request.get("table")
        if not isinstance(table, str) or not table or not request.keys() <= {"table", "key"}:
            raise ValidationException(
                'expected {"all": true}, {"table": T} or {"table": T, "key": K}'
            )
        if "key" in request:
            return await self._invalidate_key(table, request["key"])
        self._changes.forgotten(table)
        self._tables.forget(table)  # its listeners drop the table's items and pages
        return {"invalidated": "table", "table": table}

    async def _invalidate_key(self, table: str, key: object) -> dict[str, Any]:
        info = await self._tables.get(table)
        if info is None:
            raise ValidationException(f"table {table!r} cannot be described")
        try:
            canonical = item_key(info.arn, key, info.schema)
        except NotCanonical as exc:
            raise ValidationException(f"not a key of {table!r}: {exc}") from None
        self._changes.written([canonical], (), ())
        if self._items is not None:
            self._items.evict(canonical)
        return {"invalidated": "key", "table": table}

    def _drop_all(self) -> None:
        self._changes.cleared()
        if self._items is not None:
            self._items.drop_all()
        if self._queries is not None:
            self._queries.drop_all()
        for arn in self._tables.arns():
            self._tables.forget(arn)
