"""GetItem and BatchGetItem from the item cache.

An eventually consistent read of a key the cache holds is answered from memory (a *hit*):
the cached item, projected as asked, zero consumed capacity, a fresh request id. A *miss*
reads the full item upstream (projection costs nothing extra: DynamoDB charges by item
size), stores it or its absence, and answers with the projection applied. Concurrent misses
for one key share one upstream call, as long as nothing has happened to the key since that
call started: a later miss never joins a fill that a write to its key, or a drop of its
table, has overtaken, since that fill may have read the value from before a write whose
answer has already gone out. A read the cache cannot model (ConsistentRead, an
unusual member, a key or projection DynamoDB would reject) is forwarded unchanged: a
*bypass*, whose answer is DynamoDB's, byte for byte. With ``stale_grace_millis``, a miss
whose upstream call fails (no answer, the breaker open, or a 5xx; never a client error) is
answered from an entry past its TTL but within the grace, labelled ``stale`` (a
BatchGetItem only when every key it fetched has one).

A GetItem body answered from the stored answer is remembered (:attr:`ItemReads.memo`, a
:class:`~daxproxy.service.body_memo.BodyMemo`): sent again, it is a hit with no JSON parse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson

from daxproxy.core import item_requests as requests
from daxproxy.core.cache import NOT_FOUND, VALUE_START, FillTicket, ItemCache, WriteTracker
from daxproxy.core.errors import DynamoDBError
from daxproxy.core.item_requests import TableRead, Uncacheable
from daxproxy.core.keys import ItemKey, NotCanonical, item_key, key_of_item
from daxproxy.core.tables import table_name
from daxproxy.core.wire import WireResponse
from daxproxy.service.body_memo import BodyMemo
from daxproxy.service.calls import (
    BYPASS,
    HIT,
    MISS,
    STALE,
    Call,
    built,
    forward,
    hit_response,
    relay,
    request_id_of,
    send_own,
    stale,
    upstream_failed,
)
from daxproxy.service.tables import TableInfo, TableRegistry
from daxproxy.service.upstream import Upstream, UpstreamResponse

# What a shared fill resolves to: what the cache stores for the item (its ready answer, see
# item_requests.stored_item), NOT_FOUND, or None when the fill gave no answer (an error, or
# the key came back unprocessed); its waiters then go upstream.
Fill = asyncio.Future[bytes | None]


class ItemReads:
    def __init__(
        self,
        upstream: Upstream,
        cache: ItemCache,
        tables: TableRegistry,
        tracker: WriteTracker,
    ) -> None:
        self._upstream = upstream
        self._cache = cache
        self._tables = tables
        self._tracker = tracker
        # The fill in flight for each key (the latest, when an overtaken one still runs).
        self._fills: dict[ItemKey, tuple[Fill, FillTicket]] = {}
        self.memo = BodyMemo(cache, tables)

    async def _resolve(self, read: TableRead) -> TableInfo:
        info = self._tables.known(read.table)
        if info is None:
            info = await self._tables.get(read.table)
        if info is None:
            raise Uncacheable("the table cannot be described")
        if read.projection is not None and read.projection.dereferenced & info.index_keys:
            raise Uncacheable("the projection steps into an index key: DynamoDB refuses it")
        return info

    # Fills ------------------------------------------------------------------------------

    def _joinable(self, key: ItemKey) -> Fill | None:
        """The fill in flight for ``key`` that a miss starting now may share: none once a
        write to the key or a drop of its table overtook it (it may answer with the value
        from before a write that has been answered), nor while the cache stores nothing
        (a worker that lost its change channel: a write it cannot hear of may overtake it)."""
        found = self._fills.get(key)
        if found is None or not self._cache.storing:
            return None
        fill, ticket = found
        if not ticket.clean or self._cache.dropped_since(key[0], ticket.since):
            return None
        return fill

    def _fill_started(self, key: ItemKey) -> tuple[Fill, FillTicket]:
        fill: Fill = asyncio.get_running_loop().create_future()
        ticket = self._tracker.fill_started(key, self._cache.generation())
        self._fills[key] = (fill, ticket)
        return fill, ticket

    def _fill_finished(self, fill: Fill, ticket: FillTicket, value: bytes | None) -> None:
        """Store the fill's value unless a write or a drop overtook it; wake its waiters."""
        key = ticket.key
        if self._fills.get(key, (None,))[0] is fill:
            del self._fills[key]
        clean = self._tracker.fill_finished(ticket)
        if value is not None and clean:
            self._cache.put(key, value, since=ticket.since)
        fill.set_result(value)

    # GetItem ---------------------------------------------------------------------------

    def cached(self, call: Call, plain: bool = False) -> WireResponse | None:
        """GetItem's answer from the cache when it is there and needs no wait (the table
        known, no projection); else None, with nothing counted, and :meth:`get_item`
        answers it. ``plain``: the call's body was sent uncompressed, so it may be
        remembered (:attr:`memo`)."""
        payload = call.payload
        try:
            read = requests.get_item_read(payload)
            if read.consistent or read.projection is not None:
                return None
            info = self._tables.known(read.table)
            if info is None:
                return None
            key = item_key(info.arn, payload["Key"], info.schema)
        except (DynamoDBError, Uncacheable, NotCanonical):  # get_item says why, or forwards
            return None
        stored = len(payload) == 2 or requests.capacity_of(payload) == "NONE"
        if plain and stored:
            self.memo.remember(call.body, read.table, info, key)
        entry = self._cache.hit(key)
        if entry is None:
            return None
        return self._get_item_hit(read, payload, entry)

    def _get_item_hit(self, read: TableRead, payload: dict[str, Any], entry: bytes) -> WireResponse:
        capacity = "NONE" if len(payload) == 2 else requests.capacity_of(payload)
        if read.projection is None and capacity == "NONE":
            # The answer stored with the entry, as it is: no copy of the item, no CRC.
            return hit_response(*requests.stored_answer(entry, VALUE_START))
        return self._get_item_answer(read, entry[VALUE_START:], capacity, HIT)

    async def get_item(self, call: Call) -> WireResponse:
        payload = call.payload
        key = None
        try:
            read = requests.get_item_read(payload)
            if not read.consistent:  # a consistent read is forwarded
                info = self._tables.known(read.table) if read.projection is None else None
                if info is None:
                    info = await self._resolve(read)
                key = item_key(info.arn, payload["Key"], info.schema)
        except (Uncacheable, NotCanonical):
            key = None
        if key is None:
            return relay(await forward(self._upstream, call), BYPASS)
        entry = self._cache.get_entry(key)
        if entry is not None:
            return self._get_item_hit(read, payload, entry)
        capacity = "NONE" if len(payload) == 2 else requests.capacity_of(payload)
        try:
            response = await self._get_item_fill(call, read, key, capacity)
        except DynamoDBError as error:
            fallback = None if error.is_client_error else self._get_item_stale(read, key, capacity)
            if fallback is None:
                raise
            return fallback
        if response.status >= 500:
            return self._get_item_stale(read, key, capacity) or response
        return response

    async def _get_item_fill(
        self, call: Call, read: TableRead, key: ItemKey, capacity: str
    ) -> WireResponse:
        shared = self._joinable(key)
        if shared is not None:
            value = await asyncio.shield(shared)
            if value is None:
                return relay(await forward(self._upstream, call), BYPASS)
            return self._get_item_answer(read, value, capacity, MISS)
        return await self._get_item_miss(call, read, key)

    def _get_item_stale(self, read: TableRead, key: ItemKey, capacity: str) -> WireResponse | None:
        found = self._cache.get_stale(key)
        if found is None:
            return None
        value, expired_for = found
        self._cache.stats.stale_served += 1
        return stale(self._get_item_answer(read, value, capacity, STALE), expired_for)

    def _get_item_answer(
        self,
        read: TableRead,
        value: bytes,
        capacity: str,
        outcome: str,
        *,
        consumed: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> WireResponse:
        # Built from the item, never the stored answer: the projection, the capacity, the
        # request id or the label (stale) may differ.
        item = (
            None
            if value == NOT_FOUND
            else requests.project(requests.item_of(value), read.projection)
        )
        if consumed is None:
            consumed = requests.consumed_capacity(_plain_name(read.table), capacity)
        return built(requests.get_item_body(item, consumed), outcome, request_id)

    async def _get_item_miss(self, call: Call, read: TableRead, key: ItemKey) -> WireResponse:
        fill, ticket = self._fill_started(key)
        value: bytes | None = None
        try:
            fetch = {"TableName": call.payload["TableName"], "Key": call.payload["Key"]}
            if "ReturnConsumedCapacity" in call.payload:
                fetch["ReturnConsumedCapacity"] = call.payload["ReturnConsumedCapacity"]
            answer = await send_own(self._upstream, call, fetch)
            if answer.status != 200:
                return relay(answer, MISS)
            body = orjson.loads(answer.body)
            item = body.get("Item")
            value = NOT_FOUND if item is None else requests.stored_item(orjson.dumps(item))
        finally:
            self._fill_finished(fill, ticket, value)
        return self._get_item_answer(
            read,
            value,
            requests.capacity_of(call.payload),
            MISS,
            consumed=body.get("ConsumedCapacity"),
            request_id=request_id_of(answer),
        )

    # BatchGetItem ----------------------------------------------------------------------

    async def batch_get_item(self, call: Call) -> WireResponse:
        try:
            reads = requests.batch_get_reads(call.payload)
            # Every table read consistently: nothing to serve from the cache, so the
            # upstream's answer is relayed byte for byte.
            plan = None
            if not all(read.consistent for read, _ in reads.values()):
                plan = await self._batch_plan(call, reads)
        except (Uncacheable, NotCanonical):
            plan = None
        if plan is None:
            return relay(await forward(self._upstream, call), BYPASS)
        return await plan.run()

    async def _batch_plan(
        self, call: Call, reads: dict[str, tuple[TableRead, list[Any]]]
    ) -> _BatchPlan:
        plan = _BatchPlan(self, call, requests.capacity_of(call.payload))
        seen: set[ItemKey] = set()  # across tables too: a name and its ARN are one table
        total = 0
        for table, (read, keys) in reads.items():
            if read.consistent:
                plan.passthrough[table] = call.payload["RequestItems"][table]
                continue
            info = await self._resolve(read)
            canonical = [item_key(info.arn, key, info.schema) for key in keys]
            seen.update(canonical)
            total += len(canonical)
            if len(seen) != total:
                raise Uncacheable("duplicate keys: DynamoDB rejects them")
            plan.add_table(table, read, info, list(zip(canonical, keys, strict=True)))
        return plan


class _BatchPlan:
    """One BatchGetItem: which keys are hits, which wait on another fill, which to fetch."""

    def __init__(self, reads: ItemReads, call: Call, capacity: str) -> None:
        self.reads = reads
        self.call = call
        self.capacity = capacity
        self.passthrough: dict[str, Any] = {}  # consistent tables: sent as the client asked
        self.tables: dict[str, tuple[TableRead, TableInfo]] = {}
        self.found: dict[str, list[bytes]] = {}
        self.unprocessed: dict[str, list[Any]] = {}
        self.hits = 0
        self._waits: list[tuple[str, Any, Fill]] = []
        self._fetch: dict[str, list[tuple[ItemKey, Any]]] = {}

    def add_table(
        self, table: str, read: TableRead, info: TableInfo, keys: list[tuple[ItemKey, Any]]
    ) -> None:
        self.tables[table] = (read, info)
        self.found[table] = []
        cache = self.reads._cache
        projection = read.projection
        found = self.found[table]
        for key, raw in keys:
            entry = cache.get_entry(key)
            if entry is not None:
                self.hits += 1
                if len(entry) > VALUE_START:  # not NOT_FOUND
                    item = requests.item_of(entry, VALUE_START)
                    found.append(item if projection is None else requests.project(item, projection))
            elif (shared := self.reads._joinable(key)) is not None:
                self._waits.append((table, raw, shared))
            else:
                self._fetch.setdefault(table, []).append((key, raw))

    def _keep(self, table: str, value: bytes) -> None:
        """A stored value (NOT_FOUND: nothing) into the answer."""
        if value != NOT_FOUND:
            self._keep_item(table, requests.item_of(value))

    def _keep_item(self, table: str, item: bytes) -> None:
        read = self.tables[table][0]
        self.found[table].append(requests.project(item, read.projection))

    async def run(self) -> WireResponse:
        consumed: list[dict[str, Any]] = []
        request_id = None
        if self._fetch or self.passthrough:
            try:
                answer = await self._fetch_misses()
            except DynamoDBError as error:
                fallback = None if error.is_client_error else await self._stale()
                if fallback is None:
                    raise
                return fallback
            if answer.status != 200:
                fallback = await self._stale() if upstream_failed(answer) else None
                return fallback or relay(answer, MISS)
            consumed = orjson.loads(answer.body).get("ConsumedCapacity", [])
            if not self.hits and not self._waits:
                request_id = request_id_of(answer)
        await self._join_waits()
        outcome = HIT if not self._fetch and not self.passthrough else MISS
        return built(self._body(consumed), outcome, request_id)

    async def _join_waits(self) -> None:
        """Take the items of the fills this batch waited on (a key no fill found stays
        unprocessed, to be asked again)."""
        for table, raw, fill in self._waits:
            value = await asyncio.shield(fill)
            if value is None:
                self.unprocessed.setdefault(table, []).append(raw)
            else:
                self._keep(table, value)

    async def _stale(self) -> WireResponse | None:
        """The answer from stale entries when the fetch failed: only when every fetched key
        has one and no table was to be read consistently."""
        cache = self.reads._cache
        if self.passthrough or not cache.stale_grace:
            return None
        fallback: list[tuple[str, bytes, float]] = []
        for table, keys in self._fetch.items():
            for key, _ in keys:
                found = cache.get_stale(key)
                if found is None:
                    return None
                fallback.append((table, *found))
        for table, entry, _ in fallback:
            self._keep(table, entry)
        await self._join_waits()
        cache.stats.stale_served += len(fallback)
        expired_for = max(expired for _, _, expired in fallback)
        return stale(built(self._body([]), STALE), expired_for)

    async def _fetch_misses(self) -> UpstreamResponse:
        reads = self.reads
        fills: list[tuple[Fill, FillTicket]] = []
        items: dict[str, Any] = dict(self.passthrough)
        for table, keys in self._fetch.items():
            items[table] = {"Keys": [raw for _, raw in keys]}
            fills.extend(reads._fill_started(key) for key, _ in keys)
        values: dict[ItemKey, bytes | None] = {}
        fetch: dict[str, Any] = {"RequestItems": items}
        if "ReturnConsumedCapacity" in self.call.payload:
            fetch["ReturnConsumedCapacity"] = self.call.payload["ReturnConsumedCapacity"]
        try:
            answer = await send_own(reads._upstream, self.call, fetch)
            if answer.status == 200:
                values = self._merge(orjson.loads(answer.body))
        finally:
            for fill, ticket in fills:
                reads._fill_finished(fill, ticket, values.get(ticket.key))
        return answer

    def _merge(self, body: Mapping[str, Any]) -> dict[ItemKey, bytes | None]:
        """Fetched items into the answer; each fetched key's fill value."""
        values: dict[ItemKey, bytes | None] = {}
        responses = body.get("Responses", {})
        unprocessed = body.get("UnprocessedKeys", {})
        for table in self.passthrough:
            self.found.setdefault(table, []).extend(
                orjson.dumps(i) for i in responses.get(table, [])
            )
            if table in unprocessed:
                self.unprocessed[table] = unprocessed[table]["Keys"]
        for table, keys in self._fetch.items():
            info = self.tables[table][1]
            for item in responses.get(table, []):
                value = orjson.dumps(item)
                values[key_of_item(info.arn, item, info.schema)] = requests.stored_item(value)
                self._keep_item(table, value)
            left = unprocessed.get(table, {}).get("Keys", [])
            left_keys = {item_key(info.arn, raw, info.schema) for raw in left}
            if left:
                self.unprocessed.setdefault(table, []).extend(left)
            for key, _ in keys:
                if key not in values and key not in left_keys:
                    values[key] = NOT_FOUND
        return values

    def _body(self, consumed: list[dict[str, Any]]) -> bytes:
        request_items = self.call.payload["RequestItems"]
        unprocessed = {
            table: {**{k: v for k, v in request_items[table].items() if k != "Keys"}, "Keys": keys}
            for table, keys in self.unprocessed.items()
        }
        capacities = None
        if self.capacity != "NONE":
            reported = {c.get("TableName"): c for c in consumed}
            capacities = []
            for table in request_items:
                name = _plain_name(table)
                zero = requests.consumed_capacity(name, self.capacity) or {}
                capacities.append(reported.get(name) or reported.get(table) or zero)
        return requests.batch_get_body(self.found, unprocessed, capacities)


def _plain_name(table: str) -> str:
    """The name DynamoDB reports in ConsumedCapacity: the name, for an ARN too."""
    return table_name(table)
