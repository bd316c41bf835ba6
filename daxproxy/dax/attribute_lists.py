"""Attribute-list ids: the numbers DAX puts in place of an item's attribute names.

An item's values go on the wire as an attribute-list id followed by the values, in the
order of that list (the item's non-key names, sorted). ``defineAttributeListId(names)``
asks for a list's id, ``defineAttributeList(id)`` for an id's names; both directions are
cached by the clients for as long as they live, and the namespace is the server's, not a
table's. So an id, once given, must name the same list forever: :class:`AttributeLists`
only ever adds. Id 1 is the empty list (the clients resolve it without asking). At most
``max_lists`` lists are named; past that, :class:`Full` is raised and the call that needed
a new one fails, rather than any id being reused.

This registry lives in memory: ids are forgotten when the process ends, so a client that
outlives a restart would misread items. Persisting them is the next step (``data_dir``).
"""

from __future__ import annotations

from collections.abc import Sequence

EMPTY_LIST_ID = 1
DEFAULT_MAX_LISTS = 65_536


class Full(Exception):
    """No new attribute list can be named."""


class AttributeLists:
    __slots__ = ("_ids", "_lists", "_max_lists")

    def __init__(self, max_lists: int = DEFAULT_MAX_LISTS) -> None:
        self._max_lists = max_lists
        self._ids: dict[tuple[str, ...], int] = {(): EMPTY_LIST_ID}
        self._lists: dict[int, tuple[str, ...]] = {EMPTY_LIST_ID: ()}

    def id_of(self, names: Sequence[str]) -> int:
        """The id of the list ``names`` (in that order), named now if it is new."""
        key = tuple(names)
        found = self._ids.get(key)
        if found is not None:
            return found
        if len(self._lists) >= self._max_lists:
            raise Full(f"{self._max_lists} attribute lists are named already")
        list_id = EMPTY_LIST_ID + len(self._lists)
        self._ids[key] = list_id
        self._lists[list_id] = key
        return list_id

    def names_of(self, list_id: int) -> tuple[str, ...] | None:
        """The names of list ``list_id``; None for an id this registry never gave."""
        return self._lists.get(list_id)
