"""Writes through the item cache, and everything else that can change what it holds.

A write is forwarded; once DynamoDB says it succeeded, the cache holds the new state of each
written key: the item a PutItem wrote (as written, as DAX does), the item an UpdateItem
returned (the proxy asks for ALL_NEW when the caller asked for NONE or ALL_NEW, and answers
with what the caller asked for), a negative entry for a delete; a transaction's keys are
evicted. A client error (a failed condition, validation, throttling) leaves the cache as it
was. No answer, a 5xx or a call abandoned in flight evicts the touched keys, because the
write may have happened, and may yet happen: nothing is stored for those keys until it can
no longer land (``hold_seconds``, the upstream request timeout). Two writes to one key in
flight at once evict it: their order upstream is unknown.

DeleteTable and UpdateTable drop the table's items and key schema; a PartiQL statement
that can write drops the items of the tables it names (all tables when it cannot tell).
The query cache hears of each (see :class:`daxproxy.service.query_cache.QueryCache`).

With other workers (``changes``, see :mod:`daxproxy.service.coherence`), each change is
published as soon as the upstream has answered, before the answer goes out: the keys a
write wrote, the keys and tables an unsure write holds, the tables a PartiQL write or a
table change drops. A write's new value is stored only if no drop (a lost change channel
included) came between its start and its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from daxproxy.core import partiql, wire
from daxproxy.core.cache import NOT_FOUND, ItemCache, WriteTicket, WriteTracker
from daxproxy.core.item_requests import After, Uncacheable, Written, stored_item, written_items
from daxproxy.core.keys import ItemKey, NotCanonical, item_key, key_of_item
from daxproxy.core.wire import WireResponse
from daxproxy.service.calls import (
    Call,
    answer_json,
    forward,
    relay,
    request_id_of,
    send_own,
)
from daxproxy.service.coherence import NO_CHANGES, Changes, drop_tables
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.tables import TableInfo, TableRegistry
from daxproxy.service.upstream import Upstream, UpstreamResponse

log = logging.getLogger(__name__)

_UPDATE_RETURNS_NEW = frozenset({None, "NONE", "ALL_NEW"})


class ItemWrites:
    def __init__(
        self,
        upstream: Upstream,
        cache: ItemCache,
        tables: TableRegistry,
        tracker: WriteTracker,
        queries: QueryCache | None = None,
        *,
        hold_seconds: float = 0.0,
        changes: Changes = NO_CHANGES,
    ) -> None:
        self._upstream = upstream
        self._changes = changes
        self._cache = cache
        self._tables = tables
        self._tracker = tracker
        self._queries = queries
        self._hold_seconds = hold_seconds

    async def write(self, call: Call) -> WireResponse:
        try:
            written = list(written_items(call.operation.name, call.payload))
        except Uncacheable:
            # DynamoDB will almost surely reject it; if it does not, nothing may go stale.
            return await self._unread(call, None)
        keyed, unknown, infos = await self._keys(written)
        tables = {entry.table for entry in written}
        self._tables_written(tables)
        ticket = self._tracker.write_started(key for key, _ in keyed)
        since = self._cache.generation()
        answer = None
        try:
            answer, response = await self._send(call)
        finally:
            self._tracker.write_finished(ticket)
            self._tables_written(tables)
            if answer is None or answer.status >= 500:  # no answer, or a fault
                self._unsure(keyed, unknown, tables)
            elif answer.status == 200:
                self._changes.written((key for key, _ in keyed), tables, unknown)
        if answer.status == 200:
            self._apply(
                call, answer, keyed, unknown=unknown, infos=infos, ticket=ticket, since=since
            )
        return response

    async def _keys(
        self, written: list[Written]
    ) -> tuple[list[tuple[ItemKey, Written]], set[str], dict[str, TableInfo]]:
        """Each written key; the tables whose keys could not be read (dropped whole); and
        the info each table was read with."""
        keyed: list[tuple[ItemKey, Written]] = []
        unknown: set[str] = set()
        infos: dict[str, TableInfo] = {}
        for entry in written:
            info = infos.get(entry.table) or await self._tables.get(entry.table)
            if info is None:
                unknown.add(entry.table)
                continue
            infos[entry.table] = info
            try:
                key = _key_of(entry, info)
            except NotCanonical:  # DynamoDB will refuse it, unless the schema changed
                self._tables.suspect(entry.table)
                unknown.add(entry.table)
                continue
            keyed.append((key, entry))
        return keyed, unknown, infos

    async def _send(self, call: Call) -> tuple[UpstreamResponse, WireResponse]:
        """Forward the write; an UpdateItem is asked for ALL_NEW when that costs nothing."""
        asked = call.payload.get("ReturnValues")
        if call.operation.name != "UpdateItem" or asked not in _UPDATE_RETURNS_NEW:
            answer = await forward(self._upstream, call)
            return answer, relay(answer)
        try:
            answer = await send_own(
                self._upstream, call, {**call.payload, "ReturnValues": "ALL_NEW"}
            )
        except orjson.JSONEncodeError:  # nested deeper than JSON is written: sent as it came
            answer = await forward(self._upstream, call)
            return answer, relay(answer)
        if answer.status != 200 or asked == "ALL_NEW":
            return answer, relay(answer)
        body = answer_json(answer)
        body.pop("Attributes", None)  # the caller asked for none
        return answer, wire.json_response(orjson.dumps(body), request_id=request_id_of(answer))

    def _apply(
        self,
        call: Call,
        answer: UpstreamResponse,
        keyed: list[tuple[ItemKey, Written]],
        *,
        unknown: set[str],
        infos: dict[str, TableInfo],
        ticket: WriteTicket,
        since: int,
    ) -> None:
        body = answer_json(answer)
        unprocessed, unreadable = self._unprocessed(body, infos)
        unknown = unknown | unreadable
        for key, entry in keyed:
            if key in unprocessed:
                continue  # not written: what the cache holds is still true
            if key in ticket.contended or entry.after is After.EVICT:
                self._cache.evict(key)
            elif entry.after is After.ABSENT:
                self._cache.put(key, NOT_FOUND, since=since)
            else:
                self._put(key, entry.item, since)
        if call.operation.name == "UpdateItem" and "Attributes" in body:
            # Only ALL_NEW carries the whole item: the proxy asked for it when it could.
            asked = call.payload.get("ReturnValues")
            updated = keyed[0][0] if keyed else None
            if (
                updated is not None
                and asked in _UPDATE_RETURNS_NEW
                and updated not in ticket.contended
            ):
                self._put(updated, body["Attributes"], since)
        self._drop_tables(unknown)

    def _put(self, key: ItemKey, item: Any, since: int) -> None:
        """Store the item as written, unless its table was dropped since the write started
        (``since``); one nested too deep to write as JSON is evicted (only a lenient
        upstream accepts it: DynamoDB refuses items nested over 32 levels)."""
        try:
            self._cache.put(key, stored_item(orjson.dumps(item)), since=since)
        except orjson.JSONEncodeError:
            self._cache.evict(key)

    def _unprocessed(
        self, body: dict[str, Any], infos: dict[str, TableInfo]
    ) -> tuple[set[ItemKey], set[str]]:
        """BatchWriteItem's UnprocessedItems as cache keys, read with the table info the
        write was keyed with; and the tables of those that cannot be read so (dropped
        whole: which of their keys were written is not known)."""
        left = body.get("UnprocessedItems")
        if not left:
            return set(), set()
        try:
            entries = list(written_items("BatchWriteItem", {"RequestItems": left}))
        except Uncacheable:  # not what DynamoDB sends: trust none of the answer
            return set(), set(infos)
        keys: set[ItemKey] = set()
        tables: set[str] = set()
        for entry in entries:
            key = _key_or_none(entry, infos.get(entry.table))
            if key is None:
                tables.add(entry.table)
            else:
                keys.add(key)
        return keys, tables

    def _tables_written(self, tables: Iterable[str]) -> None:
        if self._queries is not None:
            for table in tables:
                self._queries.table_written(table)

    def _unsure(
        self, keyed: Iterable[tuple[ItemKey, Written]], unknown: set[str], tables: set[str]
    ) -> None:
        """The write may or may not have happened, and may yet: hold all it touched, the
        keys, the tables whose keys could not be read (whole), and in strict mode the
        tables' pages."""
        self._changes.unsure((key for key, _ in keyed), unknown, tables)
        held: list[ItemKey | str] = [key for key, _ in keyed]
        for table in unknown:
            held.extend(self._tables.matching(table))
        self._cache.hold(held, self._hold_seconds)
        if self._queries is not None:
            for table in tables:
                self._queries.write_unsure(table)

    def _drop_tables(self, tables: Iterable[str]) -> None:
        for table in tables:
            for arn in self._tables.matching(table):
                self._cache.drop_table(arn)

    def _drop(self, tables: set[str] | None, *, unsure: bool) -> None:
        """Drop the items and query pages of these tables; of all when ``tables`` is None.
        ``unsure``: the write may yet land, so hold them too."""
        self._changes.dropped(tables, unsure=unsure)
        if tables is None:
            log.info("a write the proxy could not read went upstream; dropping every cached item")
            arns = self._tables.arns()
        else:
            arns = {arn for table in tables for arn in self._tables.matching(table)}
        drop_tables(
            self._cache,
            self._queries,
            arns,
            every=tables is None,
            unsure=unsure,
            hold_seconds=self._hold_seconds,
        )

    async def _unread(self, call: Call, tables: set[str] | None) -> WireResponse:
        """Forward a write the cache cannot follow key by key; once it may have happened,
        drop what it may have changed (``tables``; every table when None)."""
        answer = None
        try:
            answer = await forward(self._upstream, call)
        finally:
            if answer is None or answer.status >= 500:
                self._drop(tables, unsure=True)
            elif answer.status < 400:
                self._drop(tables, unsure=False)
        return relay(answer)

    # Table changes and PartiQL ---------------------------------------------------------

    async def table_change(self, call: Call) -> WireResponse:
        """DeleteTable, UpdateTable: once DynamoDB takes it, forget the table."""
        table = call.payload.get("TableName")
        answer = None
        try:
            answer = await forward(self._upstream, call)
        finally:
            if isinstance(table, str) and (answer is None or not 400 <= answer.status < 500):
                self._forget_table(table, unsure=answer is None or answer.status >= 500)
        return relay(answer)

    def _forget_table(self, table: str, *, unsure: bool) -> None:
        """Forget the table's schema; the registry's listeners drop its items and pages."""
        if unsure:  # first: a worker that knows the table holds it before it forgets it
            self._changes.dropped([table], unsure=True)
        self._changes.forgotten(table)
        arns = self._tables.forget(table)
        if unsure:
            self._cache.hold(arns, self._hold_seconds)
            if self._queries is not None:
                for arn in arns:
                    self._queries.dropped(arn, unsure=True)

    async def statement(self, call: Call) -> WireResponse:
        """ExecuteStatement, BatchExecuteStatement, ExecuteTransaction."""
        tables = statement_tables(call.operation.name, call.payload)
        if tables is not None and not tables:  # reads only
            return relay(await forward(self._upstream, call))
        return await self._unread(call, tables)


def statement_tables(operation: str, payload: dict[str, Any]) -> set[str] | None:
    """The tables the PartiQL statements of a request can write: empty for reads only,
    None when some statement cannot be read (then every table counts as written). Only the
    member ``operation`` runs is read (:func:`partiql.statements`)."""
    statements = partiql.statements(operation, payload)
    if statements is None:
        return None
    tables: set[str] = set()
    for statement in statements:
        if statement.verb == partiql.SELECT:
            continue
        if statement.verb is None or statement.tables is None:
            return None
        tables.update(statement.tables)
    return tables


def _key_of(entry: Written, info: TableInfo) -> ItemKey:
    """The cache key of a written entry; raises NotCanonical when it does not fit."""
    if entry.is_item:
        return key_of_item(info.arn, entry.key, info.schema)
    return item_key(info.arn, entry.key, info.schema)


def _key_or_none(entry: Written, info: TableInfo | None) -> ItemKey | None:
    if info is None:
        return None
    try:
        return _key_of(entry, info)
    except NotCanonical:
        return None
