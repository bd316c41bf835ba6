"""What the item cache reads from requests and writes into responses, with no I/O.

Reads: :func:`get_item_read` and :func:`batch_get_reads` accept a request only when the
proxy knows exactly what DynamoDB would answer; anything unusual raises :class:`Uncacheable`
and the request is forwarded unchanged. Writes: :func:`written_items` says which keys a
write touches and, for each, what the cache should hold afterwards if it succeeds.
Responses: :func:`get_item_body` and :func:`batch_get_body` build the JSON a cached answer
sends, with zero consumed capacity as DAX reports for a hit.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from daxproxy.core.projection import Projection, ProjectionUnsupported, compile_projection

_GET_ITEM_FIELDS = frozenset(
    {
        "TableName",
        "Key",
        "ProjectionExpression",
        "ExpressionAttributeNames",
        "AttributesToGet",
        "ConsistentRead",
        "ReturnConsumedCapacity",
    }
)
_BATCH_GET_FIELDS = frozenset({"RequestItems", "ReturnConsumedCapacity"})
_BATCH_TABLE_FIELDS = frozenset(
    {
        "Keys",
        "ProjectionExpression",
        "ExpressionAttributeNames",
        "AttributesToGet",
        "ConsistentRead",
    }
)
_CAPACITY = frozenset({"NONE", "TOTAL", "INDEXES"})
MAX_BATCH_KEYS = 100


class Uncacheable(ValueError):
    """The proxy cannot be sure of DynamoDB's answer: forward the request unchanged."""


class TableRead:
    """How one table is read: the cache serves it only when ``consistent`` is False.
    (A plain slotted class: built per request, it costs a quarter of a frozen dataclass.)"""

    __slots__ = ("consistent", "projection", "table")

    def __init__(self, table: str, projection: Projection | None, consistent: bool) -> None:
        self.table = table  # as the client wrote it: a name or an ARN
        self.projection = projection
        self.consistent = consistent

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TableRead):
            return NotImplemented
        return (self.table, self.projection, self.consistent) == (
            other.table,
            other.projection,
            other.consistent,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TableRead({self.table!r}, {self.projection!r}, {self.consistent!r})"


def _consistent(request: Mapping[str, Any]) -> bool:
    value = request.get("ConsistentRead", False)
    if not isinstance(value, bool):
        raise Uncacheable("ConsistentRead is not a boolean")
    return value


def _projection(request: Mapping[str, Any]) -> Projection | None:
    try:
        return compile_projection(request)
    except ProjectionUnsupported as exc:
        raise Uncacheable(str(exc)) from None


def capacity_of(request: Mapping[str, Any]) -> str:
    value = request.get("ReturnConsumedCapacity", "NONE")
    if value not in _CAPACITY:
        raise Uncacheable("ReturnConsumedCapacity")
    return str(value)


def _table(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Uncacheable("TableName")
    return value


def get_item_read(payload: Mapping[str, Any]) -> TableRead:
    if len(payload) == 2 and "Key" in payload and "TableName" in payload:
        # The common request, TableName and Key alone: nothing else to read.
        if not isinstance(payload["Key"], dict):
            raise Uncacheable("Key")
        return TableRead(_table(payload["TableName"]), None, False)
    if not payload.keys() <= _GET_ITEM_FIELDS or not isinstance(payload.get("Key"), dict):
        raise Uncacheable("GetItem has a member the cache does not model")
    capacity_of(payload)
    return TableRead(_table(payload.get("TableName")), _projection(payload), _consistent(payload))


def batch_get_reads(payload: Mapping[str, Any]) -> dict[str, tuple[TableRead, list[Any]]]:
    """Each table's read and its keys as the client wrote them."""
    requests = payload.get("RequestItems")
    if not payload.keys() <= _BATCH_GET_FIELDS or not isinstance(requests, dict) or not requests:
        raise Uncacheable("BatchGetItem has a member the cache does not model")
    capacity_of(payload)
    reads: dict[str, tuple[TableRead, list[Any]]] = {}
    total = 0
    for table, entry in requests.items():
        if not isinstance(entry, dict) or not entry.keys() <= _BATCH_TABLE_FIELDS:
            raise Uncacheable("a BatchGetItem table entry has a member the cache does not model")
        keys = entry.get("Keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
            raise Uncacheable("Keys")
        total += len(keys)
        reads[table] = (TableRead(_table(table), _projection(entry), _consistent(entry)), keys)
    if total > MAX_BATCH_KEYS:
        raise Uncacheable("more keys than BatchGetItem takes")
    return reads


# What the item cache holds for an item is its GetItem answer, ready to send, after that
# answer's CRC32: ``<crc, 4 bytes little-endian>{"Item":<item>}`` (an absent item is
# NOT_FOUND, the empty value). A plain hit sends it as it is; the item is a slice of it.
_ITEM_HEAD = b'{"Item":'
_CRC = struct.Struct("<I")
_ITEM_START = _CRC.size + len(_ITEM_HEAD)
EMPTY_ANSWER = b"{}"  # GetItem's answer for no such item
EMPTY_ANSWER_CRC = str(zlib.crc32(EMPTY_ANSWER))


def stored_item(item: bytes) -> bytes:
    """The value the item cache holds for an encoded item (whose every byte the cache's
    budget charges: the answer's 9 bytes of framing and its CRC included)."""
    body = b"".join((_ITEM_HEAD, item, b"}"))
    return _CRC.pack(zlib.crc32(body)) + body


def stored_answer(entry: bytes, start: int) -> tuple[bytes, str]:
    """The ready GetItem answer and its ``x-amz-crc32`` from a cache entry whose stored
    value (:func:`stored_item`, or NOT_FOUND) starts at ``start``: one copy, no CRC."""
    if len(entry) == start:
        return EMPTY_ANSWER, EMPTY_ANSWER_CRC
    return entry[start + _CRC.size :], str(_CRC.unpack_from(entry, start)[0])


def stored_body(entry: bytes, start: int) -> bytes:
    """:func:`stored_answer`'s answer alone."""
    return entry[start + _CRC.size :] if len(entry) > start else EMPTY_ANSWER


def stored_mark(entry: bytes, start: int) -> bytes:
    """The stored CRC's bytes (empty for NOT_FOUND): two entries of one length whose value
    at ``start`` begins with the same mark have the same answer's length and CRC."""
    return entry[start : start + _CRC.size]


def item_of(value: bytes, start: int = 0) -> bytes:
    """The encoded item inside a stored value (not NOT_FOUND) that starts at ``start``."""
    return value[start + _ITEM_START : -1]


def project(value: bytes, projection: Projection | None) -> bytes:
    """An encoded cached item, projected; the cached bytes themselves when no projection."""
    if projection is None:
        return value
    return orjson.dumps(projection.apply(orjson.loads(value)))


def consumed_capacity(table: str, capacity: str) -> dict[str, Any] | None:
    """What DynamoDB reports for a read that consumed nothing: DAX's answer for a hit."""
    if capacity == "NONE":
        return None
    consumed: dict[str, Any] = {"TableName": table, "CapacityUnits": 0.0}
    if capacity == "INDEXES":
        consumed["Table"] = {"CapacityUnits": 0.0}
    return consumed


def get_item_body(item: bytes | None, capacity: dict[str, Any] | None) -> bytes:
    """GetItem's answer: ``item`` is encoded (already projected) or None for no such item."""
    if capacity is None:
        return b"{}" if item is None else b"".join((_ITEM_HEAD, item, b"}"))
    head = b"{" if item is None else b"".join((_ITEM_HEAD, item, b","))
    return head + b'"ConsumedCapacity":' + orjson.dumps(capacity) + b"}"


def batch_get_body(
    responses: Mapping[str, list[bytes]],
    unprocessed: Mapping[str, Any],
    capacities: list[dict[str, Any]] | None,
) -> bytes:
    parts = [
        b'"Responses":{'
        + b",".join(
            orjson.dumps(t) + b":[" + b",".join(items) + b"]" for t, items in responses.items()
        )
        + b"}",
        b'"UnprocessedKeys":' + orjson.dumps(unprocessed),
    ]
    if capacities is not None:
        parts.append(b'"ConsumedCapacity":' + orjson.dumps(capacities))
    return b"{" + b",".join(parts) + b"}"


class After(enum.Enum):
    """What a successful write leaves in the cache for one key."""

    STORE = "store"  # the item is known: store it
    ABSENT = "absent"  # the item is deleted: store a negative entry
    EVICT = "evict"  # the item changed in a way only DynamoDB knows: forget it


@dataclass(frozen=True, slots=True)
class Written:
    table: str  # as the client wrote it
    key: Mapping[str, Any]  # the key or the whole item, as the client wrote it
    is_item: bool  # ``key`` is a whole item (a put): attributes beyond the key are ignored
    after: After
    item: Mapping[str, Any] | None = None  # for STORE


def _dict(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Uncacheable(what)
    return value


def _optional_name(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise Uncacheable(what)
    return value


def written_items(operation: str, payload: Mapping[str, Any]) -> Iterator[Written]:
    """The keys a write touches. Raises Uncacheable when they cannot be read from it."""
    if operation == "PutItem":
        item = _dict(payload.get("Item"), "Item")
        yield Written(_table(payload.get("TableName")), item, True, After.STORE, item)
    elif operation == "DeleteItem":
        yield Written(
            _table(payload.get("TableName")), _dict(payload.get("Key"), "Key"), False, After.ABSENT
        )
    elif operation == "UpdateItem":
        # The service learns the new item from the answer (ReturnValues ALL_NEW) when it can,
        # so it reads ReturnValues: anything but a name is DynamoDB's to reject.
        _optional_name(payload.get("ReturnValues"), "ReturnValues")
        yield Written(
            _table(payload.get("TableName")), _dict(payload.get("Key"), "Key"), False, After.EVICT
        )
    elif operation == "BatchWriteItem":
        for table, requests in _dict(payload.get("RequestItems"), "RequestItems").items():
            if not isinstance(requests, list):
                raise Uncacheable("RequestItems")
            for request in requests:
                yield _batch_write_request(_table(table), _dict(request, "WriteRequest"))
    elif operation == "TransactWriteItems":
        items = payload.get("TransactItems")
        if not isinstance(items, list):
            raise Uncacheable("TransactItems")
        for action in items:
            written = _transact_action(_dict(action, "TransactItem"))
            if written is not None:
                yield written
    else:
        raise Uncacheable(f"{operation} is not an item write")


def _batch_write_request(table: str, request: Mapping[str, Any]) -> Written:
    if "PutRequest" in request:
        item = _dict(_dict(request["PutRequest"], "PutRequest").get("Item"), "Item")
        return Written(table, item, True, After.STORE, item)
    if "DeleteRequest" in request:
        key = _dict(_dict(request["DeleteRequest"], "DeleteRequest").get("Key"), "Key")
        return Written(table, key, False, After.ABSENT)
    raise Uncacheable("WriteRequest")


def _transact_action(action: Mapping[str, Any]) -> Written | None:
    # DAX refills the touched keys after a transaction; evicting them is always correct.
    for kind in ("Put", "Update", "Delete"):
        if kind in action:
            body = _dict(action[kind], kind)
            is_item = kind == "Put"
            key = _dict(body.get("Item" if is_item else "Key"), "Key")
            return Written(_table(body.get("TableName")), key, is_item, After.EVICT)
    if "ConditionCheck" in action:
        return None
    raise Uncacheable("TransactItem")
