"""What the query cache reads from Query and Scan requests, with no I/O.

:func:`query_key` gives the canonical form of everything in a request that affects its
answer, so that two requests that differ only in JSON key order, in how a number is written
(``"1"`` and ``"1.0"``), in the order of a set's members or in defaults spelled out
(``ConsistentRead: false``, ``ScanIndexForward: true``) share one entry. Anything the cache
does not model, and ConsistentRead, raises :class:`Uncacheable`: the request is forwarded.
:func:`zero_capacity` turns an answer's ConsumedCapacity into what a hit reports.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from daxproxy.core import tables
from daxproxy.core.item_requests import Uncacheable, capacity_of
from daxproxy.core.keys import NotCanonical, canonical_number

_COMMON = frozenset(
    {
        "TableName",
        "IndexName",
        "FilterExpression",
        "ConditionalOperator",
        "ProjectionExpression",
        "AttributesToGet",
        "ExpressionAttributeNames",
        "ExpressionAttributeValues",
        "Select",
        "Limit",
        "ExclusiveStartKey",
        "ReturnConsumedCapacity",
        "ConsistentRead",
    }
)
_FIELDS = {
    "Query": _COMMON
    | {"KeyConditionExpression", "KeyConditions", "QueryFilter", "ScanIndexForward"},
    "Scan": _COMMON | {"ScanFilter", "Segment", "TotalSegments"},
}
# Members whose values hold DynamoDB attribute values, at some depth.
_VALUE_MAPS = frozenset({"ExpressionAttributeValues", "ExclusiveStartKey"})
_CONDITION_MAPS = frozenset({"KeyConditions", "QueryFilter", "ScanFilter"})


def table_of(payload: Mapping[str, Any]) -> str:
    """The table's name: a table ARN names the same table (:func:`tables.table_name`)."""
    table = payload.get("TableName")
    if not isinstance(table, str) or not table:
        raise Uncacheable("TableName")
    return tables.table_name(table)


def query_key(operation: str, payload: Mapping[str, Any]) -> bytes:
    """The canonical request: the cache key of its answer."""
    fields = _FIELDS.get(operation)
    if fields is None or not payload.keys() <= fields:
        raise Uncacheable(f"{operation} has a member the query cache does not model")
    consistent = payload.get("ConsistentRead", False)
    if consistent is not False:
        raise Uncacheable("ConsistentRead")
    capacity_of(payload)
    canonical: dict[str, Any] = {"Operation": operation, "TableName": table_of(payload)}
    for name, value in payload.items():
        if name in ("TableName", "ConsistentRead"):
            continue
        if name == "ScanIndexForward" and value is True:
            continue  # the default, spelled out
        if name in _VALUE_MAPS:
            canonical[name] = _value_map(value)
        elif name in _CONDITION_MAPS:
            canonical[name] = _conditions(value)
        else:
            canonical[name] = value
    try:
        return orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise Uncacheable("the request holds a value JSON cannot hold") from None


def _value_map(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Uncacheable("expected a map of attribute values")
    return {name: _attribute(v) for name, v in value.items()}


def _conditions(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Uncacheable("expected a map of conditions")
    out: dict[str, Any] = {}
    for name, condition in value.items():
        if not isinstance(condition, dict):
            raise Uncacheable("expected a condition")
        values = condition.get("AttributeValueList", [])
        if not isinstance(values, list):
            raise Uncacheable("AttributeValueList")
        out[name] = {**condition, "AttributeValueList": [_attribute(v) for v in values]}
    return out


def _attribute(value: object) -> dict[str, Any]:
    """One attribute value in canonical form: numbers by value, sets sorted, binary re-encoded.
    Wherever a value sits (ExpressionAttributeValues, ExclusiveStartKey, a legacy condition's
    AttributeValueList, nested in L or M), a value the cache cannot read, or a set DynamoDB
    refuses, is Uncacheable."""
    if not isinstance(value, dict) or len(value) != 1:
        raise Uncacheable("an attribute value must have one type")
    ((kind, raw),) = value.items()
    canonical = _CANONICAL.get(kind)
    if canonical is None:
        raise Uncacheable("an attribute value of an unknown type")
    try:
        return {kind: canonical(raw)}
    except (NotCanonical, TypeError, RecursionError):  # DynamoDB nests 32 levels at most
        raise Uncacheable("an attribute value DynamoDB would judge") from None


def _same(raw: Any) -> Any:
    return raw


def _list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise TypeError("L holds a list")
    return [_attribute(v) for v in raw]


def _map(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError("M holds a map")
    return {k: _attribute(v) for k, v in raw.items()}


def _strings(raw: object) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise TypeError("a set holds strings")
    return raw


def _binary(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError("binary is base64 text")
    try:
        return base64.b64encode(base64.b64decode(raw, validate=True)).decode("ascii")
    except binascii.Error:
        raise TypeError("binary is not base64") from None


def _set(member: Callable[[str], str]) -> Callable[[Any], list[str]]:
    """A set's members in canonical form, sorted. A set DynamoDB refuses (empty, or with two
    members equal once canonical: ``["x", "x"]``, NS ``["1", "1.0"]``, BS members with the
    same bytes) is its to judge, never a key that a valid request's page answers."""

    def canonical(raw: Any) -> list[str]:
        members = [member(m) for m in _strings(raw)]
        unique = set(members)
        if not members or len(unique) != len(members):
            raise TypeError("a set must be non-empty, without duplicates")
        return sorted(unique)

    return canonical


_CANONICAL: dict[str, Callable[[Any], Any]] = {
    "S": _same,
    "BOOL": _same,
    "NULL": _same,
    "N": canonical_number,
    "B": _binary,
    "SS": _set(_same),
    "NS": _set(canonical_number),
    "BS": _set(_binary),
    "L": _list,
    "M": _map,
}


def zero_capacity(consumed: Any) -> Any:
    """ConsumedCapacity with every unit zeroed: what an answer from memory consumed."""
    if isinstance(consumed, dict):
        return {
            k: 0.0 if k.endswith("CapacityUnits") else zero_capacity(v) for k, v in consumed.items()
        }
    if isinstance(consumed, list):
        return [zero_capacity(v) for v in consumed]
    return consumed
