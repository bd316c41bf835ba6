"""What a DAX GetItem hit would otherwise compute again: bounded memos of pure functions.

A DAX GetItem becomes DynamoDB's JSON request and DynamoDB's JSON answer becomes DAX's
reply, each a pure function of its inputs: the request's table, key and options (with
the table's key schema) give the same JSON body every time, and the same answer body (with
the same schema) the same reply (attribute-list ids, once given, never change). For the
hot keys of a read-mostly load both are computed over and over; :class:`Memo` keeps their
results, bounded by entries and by bytes (the least recently used forgotten first), so a
DAX hit of a remembered key skips the JSON rendering, the JSON parse and the CBOR encoding
of the item.
The reply is kept by the request's shape with the answer body it was made from, and used
only for that very body (compared byte for byte, which costs less than hashing it).
:func:`get_item_shape` says which GetItem requests may be remembered, and by what.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from daxproxy.core.keys import KeySchema

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most ``max_entries`` values, of at most ``max_bytes`` together (a value's size is
    what :meth:`put` is told), the one got or put least recently forgotten first."""

    __slots__ = ("_bytes", "_entries", "_max_bytes", "_max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        # Ordered by last use: a plain dict finds its first key by a scan past the slots
        # its deleted keys left, which grows with every eviction.
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def get(self, key: K) -> V | None:
        entries = self._entries
        found = entries.get(key)
        if found is None:
            return None
        entries.move_to_end(key)  # a hot key is never the one forgotten
        return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` for ``key`` (in place of any it had), the least recently used
        forgotten to make room; a value larger than the whole bound is not kept."""
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self._max_bytes:
            return
        while entries and (
            len(entries) >= self._max_entries or self._bytes + size > self._max_bytes
        ):
            self._bytes -= entries.popitem(last=False)[1][1]
        entries[key] = (value, size)
        self._bytes += size

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes


def get_item_shape(args: tuple[Any, ...], schema: KeySchema) -> Hashable | None:
    """What a GetItem's JSON request is a function of, when it may be remembered: the
    schema, the table and key as sent, and options that are all plain integers (the
    consumed-capacity choice; a projection, a consistent read or anything unusual is
    not remembered). The types are part of it, so ``True`` never stands in for ``1``."""
    table, key, kwargs = args
    if type(key) is not bytes or type(table) not in (bytes, str):
        return None
    if kwargs is None:
        options: tuple[tuple[int, int], ...] = ()
    elif type(kwargs) is dict and all(
        type(name) is int and type(value) is int for name, value in kwargs.items()
    ):
        options = tuple(kwargs.items())
    else:
        return None
    return (schema, type(table), table, key, options)
