"""Attribute-list ids: the numbers DAX puts in place of an item's attribute names.

An item's values go on the wire as an attribute-list id followed by the values, in the
order of that list (the item's non-key names, sorted). ``defineAttributeListId(names)``
asks for a list's id, ``defineAttributeList(id)`` for an id's names; both directions are
cached by the clients for as long as they live, and the namespace is the server's, not a
table's. So an id, once given, must name the same list forever: :class:`AttributeLists`
only ever adds. Id 1 is the empty list (the clients resolve it without asking). At most
``max_lists`` lists are named; past that, :class:`Full` is raised and the call that needed
a new one fails, rather than any id being reused.

Without a ``store`` the ids live in memory and die with the process: a client that
outlives a restart would then misread items. With one (a :class:`ListStore`, e.g.
:class:`daxproxy.service.attribute_store.SqliteListStore` in the ``data_dir``) the store
assigns and remembers them, and this class only caches what it has seen: ids never change,
so a cached answer never goes stale, and processes sharing one store agree on every id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

EMPTY_LIST_ID = 1
DEFAULT_MAX_LISTS = 65_536
MAX_LIST_ID = 2**62  # beyond any id given; a larger one is not looked up


class Full(Exception):
    """No new attribute list can be named."""


class ListStore(Protocol):
    """Where attribute-list ids are assigned and kept for good."""

    def id_of(self, names: tuple[str, ...], max_lists: int) -> int:
        """The id of ``names``, assigned now (the next free id) if it has none; raises
        :class:`Full` when ``max_lists`` lists are named already."""
        ...

    def names_of(self, list_id: int) -> tuple[str, ...] | None:
        """The names of ``list_id``; None for an id never assigned."""
        ...


class AttributeLists:
    __slots__ = ("_ids", "_lists", "_max_lists", "_store")

    def __init__(self, max_lists: int = DEFAULT_MAX_LISTS, store: ListStore | None = None) -> None:
        self._max_lists = max_lists
        self._store = store
        self._ids: dict[tuple[str, ...], int] = {(): EMPTY_LIST_ID}
        self._lists: dict[int, tuple[str, ...]] = {EMPTY_LIST_ID: ()}

    def id_of(self, names: Sequence[str]) -> int:
        """The id of the list ``names`` (in that order), named now if it is new."""
        key = tuple(names)
        found = self._ids.get(key)
        if found is not None:
            return found
        if self._store is not None:
            list_id = self._store.id_of(key, self._max_lists)
        elif len(self._lists) >= self._max_lists:
            raise Full(f"{self._max_lists} attribute lists are named already")
        else:
            list_id = EMPTY_LIST_ID + len(self._lists)
        self._remember(list_id, key)
        return list_id

    def names_of(self, list_id: int) -> tuple[str, ...] | None:
        """The names of list ``list_id``; None for an id never given."""
        if not EMPTY_LIST_ID <= list_id <= MAX_LIST_ID:
            return None
        found = self._lists.get(list_id)
        if found is None and self._store is not None:
            found = self._store.names_of(list_id)
            if found is not None:
                self._remember(list_id, found)
        return found

    def _remember(self, list_id: int, names: tuple[str, ...]) -> None:
        if len(self._lists) < self._max_lists:  # a cache of the store: bounded the same
            self._ids[names] = list_id
            self._lists[list_id] = names
