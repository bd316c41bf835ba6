"""DAX's method catalogue: each method's id on the wire and how many items follow it.

A request is ``1`` (the service), the method's id (a signed 32-bit int, the number in the
clients' stub names, ``amazondax/generated/Stubs.py``) and then a fixed number of positional
items, the last of which, for the data methods, is a map of optional arguments keyed by
small ints (:class:`Param`) or null. An id not in :data:`METHODS` cannot be framed (its
length is unknown), so the connection must close. ``methods`` and ``services`` have ids
but the clients never send them; they are not served.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SERVICE = 1


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    id: int
    arity: int  # positional items after the id
    replies: bool = True  # authorizeConnection gets no reply at all


AUTHORIZE_CONNECTION = Method("authorizeConnection", 1489122155, 5, replies=False)
ENDPOINTS = Method("endpoints", 455855874, 0)
DEFINE_KEY_SCHEMA = Method("defineKeySchema", -742646399, 1)
DEFINE_ATTRIBUTE_LIST_ID = Method("defineAttributeListId", -1230579644, 1)
DEFINE_ATTRIBUTE_LIST = Method("defineAttributeList", 670678385, 1)
GET_ITEM = Method("GetItem", 263244906, 3)  # table, key, kwargs
PUT_ITEM = Method("PutItem", -2106490455, 4)  # table, key, values, kwargs
DELETE_ITEM = Method("DeleteItem", 1013539361, 3)  # table, key, kwargs
UPDATE_ITEM = Method("UpdateItem", 1425579023, 3)  # table, key, kwargs
QUERY = Method("Query", -931250863, 3)  # table, key condition, kwargs
SCAN = Method("Scan", -1875390620, 2)  # table, kwargs
BATCH_GET_ITEM = Method("BatchGetItem", -697851100, 2)  # requests by table, kwargs
BATCH_WRITE_ITEM = Method("BatchWriteItem", 116217951, 2)  # writes by table, kwargs
TRANSACT_GET_ITEMS = Method("TransactGetItems", 1866287579, 4)  # tables, keys, projections, kw
# operations, tables, keys, values, return values, return values on condition check
# failure, conditions, updates, kwargs
TRANSACT_WRITE_ITEMS = Method("TransactWriteItems", -1160037738, 9)

METHODS: dict[int, Method] = {
    m.id: m
    for m in (
        AUTHORIZE_CONNECTION,
        ENDPOINTS,
        DEFINE_KEY_SCHEMA,
        DEFINE_ATTRIBUTE_LIST_ID,
        DEFINE_ATTRIBUTE_LIST,
        GET_ITEM,
        PUT_ITEM,
        DELETE_ITEM,
        UPDATE_ITEM,
        QUERY,
        SCAN,
        BATCH_GET_ITEM,
        BATCH_WRITE_ITEM,
        TRANSACT_GET_ITEMS,
        TRANSACT_WRITE_ITEMS,
    )
}


class Param(enum.IntEnum):
    """The keys of a data method's optional-argument map (``DaxDataRequestParam``)."""

    PROJECTION_EXPRESSION = 0
    EXPRESSION_ATTRIBUTE_NAMES = 1
    CONSISTENT_READ = 2
    RETURN_CONSUMED_CAPACITY = 3
    CONDITION_EXPRESSION = 4
    EXPRESSION_ATTRIBUTE_VALUES = 5
    RETURN_ITEM_COLLECTION_METRICS = 6
    RETURN_VALUES = 7
    UPDATE_EXPRESSION = 8
    EXCLUSIVE_START_KEY = 9
    FILTER_EXPRESSION = 10
    INDEX_NAME = 11
    KEY_CONDITION_EXPRESSION = 12
    LIMIT = 13
    SCAN_INDEX_FORWARD = 14
    SELECT = 15
    SEGMENT = 16
    TOTAL_SEGMENTS = 17
    REQUEST_ITEMS = 18
    CLIENT_REQUEST_TOKEN = 19


class Reply(enum.IntEnum):
    """The keys of a data method's reply map (``DaxResponseParam``)."""

    ITEM = 0
    CONSUMED_CAPACITY = 1
    ATTRIBUTES = 2
    ITEM_COLLECTION_METRICS = 3
    RESPONSES = 4
    UNPROCESSED_KEYS = 5
    UNPROCESSED_ITEMS = 6
    ITEMS = 7
    COUNT = 8
    LAST_EVALUATED_KEY = 9
    SCANNED_COUNT = 10


# The enums' wire values, to DynamoDB's names.
RETURN_CONSUMED_CAPACITY = {0: "NONE", 1: "TOTAL", 2: "INDEXES"}
RETURN_ITEM_COLLECTION_METRICS = {0: "NONE", 1: "SIZE"}
RETURN_VALUES = {1: "NONE", 2: "ALL_OLD", 3: "UPDATED_OLD", 4: "ALL_NEW", 5: "UPDATED_NEW"}
SELECT = {1: "ALL_ATTRIBUTES", 2: "ALL_PROJECTED_ATTRIBUTES", 3: "COUNT", 4: "SPECIFIC_ATTRIBUTES"}
