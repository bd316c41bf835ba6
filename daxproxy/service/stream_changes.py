"""What a table's DynamoDB Stream tells the caches, and applying it to this proxy's.

The stream follower (:mod:`daxproxy.service.streams`) turns what it reads into
:data:`Change` values and hands each to one :class:`Applier`:

- :class:`ItemsChanged`: these items of the table changed upstream. Each key is evicted from
  the item cache *through the* :class:`~daxproxy.core.cache.WriteTracker`, as a write through
  the proxy would be: a fill of the key in flight is not stored (it may have read the value
  from before the change), and a write through the proxy in flight to the key evicts rather
  than stores (its order against the change is unknown). The table's Query and Scan pages
  are dropped (a page may hold the item); a page fill in flight is refused.
- :class:`TableUnsure`: the follower cannot be sure it saw every change of the table (it has
  just started following it, lost its place in the stream, or the stream is gone): the
  table's items and pages are dropped, fills in flight included, so a gap costs misses and
  never a stale read.

:class:`LocalApplier` applies them to one proxy's caches. With worker processes, the one
follower of a process group (worker 1's) applies each change to its own caches and, through
a :class:`SharedApplier`, publishes it on the change channel for the other workers
(:mod:`daxproxy.service.coherence`: ``changed`` and ``drop``), who apply it through their own
write trackers (see the README, "Coherence through DynamoDB Streams").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from daxproxy.core.cache import ItemCache, WriteTracker
from daxproxy.core.keys import ItemKey
from daxproxy.service.query_cache import QueryCache


@dataclass(frozen=True, slots=True)
class ItemsChanged:
    table: str  # the table's ARN, as the caches key it
    keys: tuple[ItemKey, ...]


@dataclass(frozen=True, slots=True)
class TableUnsure:
    table: str  # the table's ARN


Change = ItemsChanged | TableUnsure


class Applier(Protocol):
    def apply(self, change: Change) -> None:
        """Make the caches forget what ``change`` may have made untrue; never raises."""
        ...


class LocalApplier:
    """Applies changes to one proxy's caches (None: that cache is off)."""

    def __init__(
        self, items: ItemCache | None, tracker: WriteTracker | None, queries: QueryCache | None
    ) -> None:
        self._items = items
        self._tracker = tracker
        self._queries = queries

    def apply(self, change: Change) -> None:
        if isinstance(change, ItemsChanged):
            if self._tracker is not None:
                # As a write of the proxy's own: fills in flight of these keys are dirtied.
                self._tracker.write_finished(self._tracker.write_started(change.keys))
            if self._items is not None:
                for key in change.keys:
                    self._items.evict(key)
        elif self._items is not None:
            self._items.drop_table(change.table)
        if self._queries is not None:
            self._queries.dropped(change.table)


class Changes(Protocol):
    """The other workers (:class:`~daxproxy.service.coherence.Coherence`)."""

    def changed(self, keys: Iterable[ItemKey], tables: Iterable[str]) -> None: ...

    def dropped(self, tables: Iterable[str] | None, *, unsure: bool) -> None: ...


class SharedApplier:
    """Applies each change here (``local``), then publishes it to the other workers."""

    def __init__(self, local: Applier, changes: Changes) -> None:
        self._local = local
        self._changes = changes

    def apply(self, change: Change) -> None:
        self._local.apply(change)
        if isinstance(change, ItemsChanged):
            self._changes.changed(change.keys, [change.table])
        else:
            self._changes.dropped([change.table], unsure=False)
