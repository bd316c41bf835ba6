"""What a DAX GetItem hit would otherwise compute again: bounded memos of pure functions.

A DAX GetItem becomes DynamoDB's JSON request and DynamoDB's JSON answer becomes DAX's
reply, each a pure function of its inputs: the request's table, key and options (with
the table's key schema) give the same JSON body every time, and the same answer body (with
the same schema) the same reply (attribute-list ids, once given, never change). For the
hot keys of a read-mostly load both are computed over and over; :class:`Memo` keeps their
results, bounded by entries and by bytes (the oldest forgotten first), so a DAX hit of a
remembered key skips the JSON rendering, the JSON parse and the CBOR encoding of the item.
:func:`get_item_shape` says which GetItem requests may be remembered, and by what.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from daxproxy.core.keys import KeySchema

K = TypeVar("K", bound=Hashable)


class Memo(Generic[K]):
    """At most ``max_entries`` values, of at most ``max_bytes`` together (a value's size is
    what :meth:`put` is told), the oldest put forgotten first."""

    __slots__ = ("_bytes", "_entries", "_max_bytes", "_max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: dict[K, tuple[bytes, int]] = {}
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def get(self, key: K) -> bytes | None:
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: K, value: bytes, size: int) -> None:
        if size > self._max_bytes or key in self._entries:
            return
        entries = self._entries
        while entries and (
            len(entries) >= self._max_entries or self._bytes + size > self._max_bytes
        ):
            self._bytes -= entries.pop(next(iter(entries)))[1]
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
