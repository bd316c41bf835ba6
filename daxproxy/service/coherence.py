"""Coherence between workers: what a change is, publishing the ones a worker makes or
learns, and applying the others'.

Each worker has its own caches; a change one worker makes to what is true upstream (or
learns of) is published on its :class:`~daxproxy.workers.channel.ChangeLink` as soon as the
upstream has answered, before the worker's own answer goes out, and every other worker
applies it when it arrives (the *lag*, ``daxproxy_change_lag_seconds``):

- ``write``: an item write DynamoDB answered 200. Its keys are evicted *through the
  receiving worker's* :class:`~daxproxy.core.cache.WriteTracker`, exactly as a write of its
  own would: a fill of those keys in flight there is not stored, a later miss does not join
  it, and a write of its own to one of them in flight there evicts rather than stores. The
  query cache hears the write to its tables (``--mode strict`` drops their pages). Tables
  whose written keys could not be read are dropped whole.
- ``unsure``: a write whose outcome is unknown (no answer, a 5xx, abandoned): its keys and
  unreadable tables are held (:meth:`~daxproxy.core.cache.ItemCache.hold`) in every worker,
  and in strict mode its tables' pages.
- ``drop``: a PartiQL write or a write the proxy cannot read: the tables' items and pages
  are dropped (held too, when its outcome is unknown); every table when it cannot tell.
- ``changed``: items changed behind the proxy's back, as the one stream reader read them
  from a table's DynamoDB Stream (``coherence = "streams"``): its keys are evicted through
  the receiving worker's tracker, as for ``write``, and its tables' query pages are dropped
  in every mode (a change the proxy did not make is not one ``--mode`` speaks of). A
  stream's gap (``TableUnsure``) travels as ``drop``.
- ``learned``: a worker learned a table (its name): the stream reader describes it too, so
  its follower follows it (a DescribeTable that fails is tried again, backing off from
  0.1 s to 5 s, :data:`LEARN_TRIES` times, or until the table is forgotten); the other
  workers ignore it.
- ``reader``: the stream reader started or its link came back: every other worker sends
  ``learned`` for each table it knows, since those it sent meanwhile reached no reader.
- ``table``: a table deleted, updated, found changed by the registry or invalidated: every
  worker forgets it (its schema, items and pages).
- ``all``: ``POST /admin/invalidate {"all": true}``: every worker forgets everything.

Tables travel as the request named them and as the sender resolved them (ARNs); each
receiver drops every table of its own that the name may mean, and the ARNs themselves.
Keys travel as the item cache keys them. A message is ``[kind, stamp, ...]`` in JSON
(orjson), ``stamp`` the sender's ``time.monotonic()`` (system-wide on Linux, so the lag is
measured across processes); a binary key value is ``[base64]``.

While the link is down (or a message cannot be applied, or another worker may have lost
changes) the worker drops its item and query caches and its table registry; while it is
down it stores nothing and serves every read from upstream, and when the link is back it
drops them once more and caches again. A hit never touches the channel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import orjson

from daxproxy.core.cache import ItemCache, WriteTracker
from daxproxy.core.keys import ItemKey
from daxproxy.core.tables import table_name, table_of_arn
from daxproxy.service.metrics import Metrics
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.tables import TableInfo, TableRegistry

log = logging.getLogger(__name__)

WRITE, UNSURE, DROP, TABLE, ALL = "write", "unsure", "drop", "table", "all"
CHANGED, LEARNED, READER = "changed", "learned", "reader"
# The reader's DescribeTable of a table another worker learned: tries, and the back-off.
LEARN_TRIES, LEARN_BACKOFF, LEARN_MAX_BACKOFF = 20, 0.1, 5.0


class Publisher(Protocol):
    def publish(self, payload: bytes) -> None: ...


class Changes:
    """Where a worker's changes go: nowhere (one worker); :class:`Coherence` publishes."""

    def written(self, keys: Iterable[ItemKey], tables: Iterable[str], whole: Iterable[str]) -> None:
        """A write DynamoDB answered 200: its keys, the tables it wrote as named, and the
        tables whose written keys could not be read (``whole``)."""

    def unsure(self, keys: Iterable[ItemKey], whole: Iterable[str], tables: Iterable[str]) -> None:
        """A write whose outcome is unknown: hold its keys and the ``whole`` tables; the
        tables it wrote as named (their pages, in strict mode)."""

    def changed(self, keys: Iterable[ItemKey], tables: Iterable[str]) -> None:
        """These items of these tables (ARNs) changed behind the proxy's back."""

    def dropped(self, tables: Iterable[str] | None, *, unsure: bool) -> None:
        """These tables' items and pages (all when None) may have changed; ``unsure``: and
        may yet, so hold them."""

    def forgotten(self, table: str) -> None:
        """Forget the table (by any spelling): its schema, items and pages."""

    def cleared(self) -> None:
        """Forget everything."""


NO_CHANGES = Changes()


def encode_key(key: ItemKey) -> list[Any]:
    return [_encode_value(value) for value in key]


def decode_key(encoded: list[Any]) -> ItemKey:
    arn, hash_value, range_value = encoded
    if not isinstance(arn, str):
        raise ValueError("a key's table is a string")
    return (arn, _decode_value(hash_value), _decode_value(range_value))


def _encode_value(value: str | bytes | None) -> Any:
    return [base64.b64encode(value).decode("ascii")] if isinstance(value, bytes) else value


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return base64.b64decode(value[0], validate=True)
    if value is None or isinstance(value, str):
        return value
    raise ValueError("a key value is a string, [base64] or null")


class Coherence(Changes):
    """One worker's side of the coherence: publishes its changes on ``link`` and applies
    the others' to its caches (``items``, the caches' ``tracker``, ``queries``, ``tables``).
    ``reader``: this worker follows the streams (``coherence = "streams"``: worker 1); else,
    with ``streams``, it tells the reader each table it learns.
    """

    def __init__(
        self,
        link: Publisher,
        *,
        items: ItemCache,
        tracker: WriteTracker,
        queries: QueryCache | None,
        tables: TableRegistry,
        hold_seconds: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        streams: bool = False,
        reader: bool = False,
    ) -> None:
        self._link = link
        self._items = items
        self._tracker = tracker
        self._queries = queries
        self._tables = tables
        self._hold_seconds = hold_seconds
        self._metrics = metrics
        self._clock = clock  # the stamps': must be comparable across processes
        self._applying = False  # what applying a change does is not published again
        self._reader = streams and reader
        self._tells = streams and not reader  # tells the reader the tables it learns
        self._learning: dict[str, asyncio.Task[None]] = {}  # the reader's, by table name
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests inject one
        self._handlers: dict[str, Callable[..., None]] = {
            WRITE: self._apply_written,
            UNSURE: self._apply_unsure,
            DROP: self._apply_dropped,
            TABLE: self._apply_forgotten,
            ALL: self._clear,
            CHANGED: self._apply_changed,
            LEARNED: self._apply_learned,
            READER: self._apply_reader,
        }
        metrics.channel = True
        if self._tells:
            tables.on_learned(self._table_learned)

    # Publishing ------------------------------------------------------------------------

    def _publish(self, kind: str, *args: Any, applying: bool = False) -> None:
        """``applying``: sent even while applying a change (``reader`` calls for it)."""
        if self._applying and not applying:
            return
        try:
            payload = orjson.dumps([kind, self._clock(), *args])
        except (TypeError, orjson.JSONEncodeError):  # not expected: the keys are strings
            log.exception("a change could not be encoded; the other workers drop their caches")
            payload = orjson.dumps([ALL, self._clock()])
        self._link.publish(payload)
        self._metrics.changes_published[kind] += 1

    def written(self, keys: Iterable[ItemKey], tables: Iterable[str], whole: Iterable[str]) -> None:
        self._publish(WRITE, [encode_key(k) for k in keys], sorted(tables), self._spellings(whole))

    def unsure(self, keys: Iterable[ItemKey], whole: Iterable[str], tables: Iterable[str]) -> None:
        self._publish(
            UNSURE, [encode_key(k) for k in keys], self._spellings(whole), self._spellings(tables)
        )

    def changed(self, keys: Iterable[ItemKey], tables: Iterable[str]) -> None:
        self._publish(CHANGED, [encode_key(k) for k in keys], sorted(tables))

    def dropped(self, tables: Iterable[str] | None, *, unsure: bool) -> None:
        self._publish(DROP, None if tables is None else self._spellings(tables), unsure)

    def forgotten(self, table: str) -> None:
        self._publish(TABLE, table)

    def cleared(self) -> None:
        self._publish(ALL)

    def announce(self) -> None:
        """The reader is here (started, or its link is back): the others tell it their tables."""
        if self._reader:
            self._publish(READER)

    def _table_learned(self, info: TableInfo) -> None:
        self._publish(LEARNED, table_name(info.arn))

    def _spellings(self, tables: Iterable[str]) -> list[str]:
        """The tables as named, and the ARNs this worker knows them by."""
        spellings = set(tables)
        for table in list(spellings):
            spellings |= self._tables.matching(table)
        return sorted(spellings)

    # Applying --------------------------------------------------------------------------

    def apply(self, payload: bytes) -> None:
        """Another worker's change; raises on one it cannot read (the link then has the
        caches dropped)."""
        kind, stamp, *args = orjson.loads(payload)
        handler = self._handlers[kind]
        self._applying = True
        try:
            handler(*args)
        finally:
            self._applying = False
        self._metrics.changes_applied[kind] += 1
        self._metrics.change_lag.observe(max(self._clock() - stamp, 0.0))

    def _arns(self, tables: Iterable[str]) -> set[str]:
        """Every table of this worker's that these names may mean, and the ARNs themselves."""
        arns: set[str] = set()
        for table in tables:
            arns |= self._tables.matching(table)
            if table_of_arn(table) is not None:
                arns.add(table)
        return arns

    def _overtake(self, keys: list[ItemKey]) -> None:
        """As a write of this worker's to ``keys`` would: fills in flight are not stored
        nor joined, and writes in flight evict rather than store."""
        self._tracker.write_finished(self._tracker.write_started(keys))

    def _apply_written(self, keys: list[Any], tables: list[str], whole: list[str]) -> None:
        decoded = [decode_key(key) for key in keys]
        self._overtake(decoded)
        for key in decoded:
            self._items.evict(key)
        if self._queries is not None:
            for table in tables:
                self._queries.table_written(table)
        for arn in self._arns(whole):
            self._items.drop_table(arn)

    def _apply_changed(self, keys: list[Any], tables: list[str]) -> None:
        decoded = [decode_key(key) for key in keys]
        self._overtake(decoded)
        for key in decoded:
            self._items.evict(key)
        if self._queries is not None:
            for arn in self._arns(tables):
                self._queries.dropped(arn)

    def _apply_learned(self, table: str) -> None:
        """The reader learns the table too, so that its follower follows it."""
        if not self._reader or table in self._learning or self._tables.known(table) is not None:
            return
        task = asyncio.get_running_loop().create_task(self._learn(table))
        self._learning[table] = task
        task.add_done_callback(lambda done: self._learnt(table, done))

    def _learnt(self, table: str, task: asyncio.Task[None]) -> None:
        if self._learning.get(table) is task:
            del self._learning[table]

    async def _learn(self, table: str) -> None:
        delay = LEARN_BACKOFF
        for _ in range(LEARN_TRIES):
            if await self._tables.get(table) is not None:
                return
            await self.sleep(delay)
            delay = min(delay * 2, LEARN_MAX_BACKOFF)
        log.warning(
            "coherence streams: a table another worker caches could not be described, so "
            "its stream is not followed until that worker learns it again"
        )

    def _stop_learning(self, table: str | None) -> None:
        """Stop describing the table (None: every table)."""
        for name in list(self._learning) if table is None else [table_name(table)]:
            task = self._learning.pop(name, None)
            if task is not None:
                task.cancel()

    def _apply_reader(self) -> None:
        if self._tells:
            for arn in sorted(self._tables.arns()):
                self._publish(LEARNED, table_name(arn), applying=True)

    async def close(self) -> None:
        """Stop the reader's DescribeTables in flight."""
        tasks = list(self._learning.values())
        self._stop_learning(None)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _apply_unsure(self, keys: list[Any], whole: list[str], tables: list[str]) -> None:
        decoded = [decode_key(key) for key in keys]
        self._overtake(decoded)
        self._items.hold([*decoded, *self._arns(whole)], self._hold_seconds)
        if self._queries is not None and self._queries.strict:
            # Held even if this worker does not know them yet (QueryCache.write_unsure).
            self._queries.cache.hold(self._arns(tables), self._hold_seconds)

    def _apply_dropped(self, tables: list[str] | None, unsure: bool) -> None:
        arns = self._tables.arns() if tables is None else self._arns(tables)
        drop_tables(
            self._items,
            self._queries,
            arns,
            every=tables is None,
            unsure=unsure,
            hold_seconds=self._hold_seconds,
        )

    def _apply_forgotten(self, table: str) -> None:
        self._stop_learning(table)
        self._tables.forget(table)  # its listeners drop the items and pages

    def _clear(self) -> None:
        """Forget every item, page and table."""
        self._stop_learning(None)
        self._items.drop_all()
        if self._queries is not None:
            self._queries.drop_all()
        for arn in self._tables.arns():
            self._tables.forget(arn)

    # The link's state ------------------------------------------------------------------

    def _dropping_all(self) -> None:
        self._applying = True
        try:
            self._clear()
        finally:
            self._applying = False

    def _storing(self, on: bool) -> None:
        self._items.storing = on
        if self._queries is not None:
            self._queries.cache.storing = on

    def lost(self) -> None:
        log.warning(
            "the change channel to the other workers is lost: caches dropped; every read "
            "goes upstream until it is back"
        )
        self._metrics.change_channel_lost += 1
        self._storing(False)
        self._dropping_all()

    def restored(self) -> None:
        self._dropping_all()  # changes may have been missed while it was down
        self._storing(True)
        self.announce()  # what the others learned meanwhile reached no reader

    def missed(self) -> None:
        log.warning("changes from another worker may have been lost: caches dropped")
        self._metrics.change_channel_resets += 1
        self._dropping_all()


def drop_tables(
    items: ItemCache,
    queries: QueryCache | None,
    arns: Iterable[str],
    *,
    every: bool,
    unsure: bool,
    hold_seconds: float,
) -> None:
    """Drop the tables' items and query pages (``every``: every table's pages, ``arns``
    being every table known); ``unsure``: the write may yet land, so hold them for
    ``hold_seconds`` too. What a worker does for its own writes and for another's."""
    arns = set(arns)
    if unsure:
        items.hold(arns, hold_seconds)  # which drops them too
    else:
        for arn in arns:
            items.drop_table(arn)
    if queries is None:
        return
    if every:
        queries.drop_all(unsure=unsure)
    else:
        for arn in arns:
            queries.dropped(arn, unsure=unsure)
