"""What a DAX GetItem hit would otherwise compute again: which requests may be remembered.

A DAX GetItem becomes DynamoDB's JSON request and DynamoDB's JSON answer becomes DAX's
reply, each a pure function of its inputs: the request's table, key and options (with
the table's key schema) give the same JSON body every time, and the same answer body (with
the same schema) the same reply (attribute-list ids, once given, never change). For the
hot keys of a read-mostly load both are computed over and over; two
:class:`~daxproxy.service.memo.Memo` keep their results, bounded by entries and by bytes
(the least recently used forgotten first), so a DAX hit of a remembered key skips the JSON
rendering, the JSON parse and the CBOR encoding of the item.
The reply is kept by the request's shape with the answer body it was made from, and used
only for that very body (compared byte for byte, which costs less than hashing it).
:func:`get_item_shape` says which GetItem requests may be remembered, and by what.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from daxproxy.core.keys import KeySchema


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
