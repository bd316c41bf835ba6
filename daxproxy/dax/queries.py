"""Query and Scan between DAX's wire and DynamoDB JSON (sans-IO).

A Query is ``table, key condition (compiled, or null), kwargs``; a Scan ``table, kwargs``.
The options are those of DynamoDB's requests, with DAX's spellings: IndexName as bytes,
ConsistentRead and ScanIndexForward as ints 0/1, Select and ReturnConsumedCapacity as
enum ints, ExclusiveStartKey as key bytes for the table, or for an index the bytes of a
CBOR map of name to value (a "compound key"). Every expression is rendered back to text
by one :class:`~daxproxy.dax.expressions.Renderer`, so the request's placeholders never
collide.

The reply is a map: 7 Items, 8 Count, 10 ScannedCount, 9 LastEvaluatedKey (the same forms
as ExclusiveStartKey), 1 ConsumedCapacity. Each item is ``[key bytes, values payload]``
(the table's key, then the other attributes by attribute list: the client needs both, as
it puts back no key from the request), or with a projection a map from path positions to
values, as for GetItem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, cbor, values
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.expressions import BadExpression, Path, Renderer
from daxproxy.dax.methods import SELECT, Param, Reply


def query_payload(
    args: tuple[Any, ...], schema: KeySchema
) -> tuple[dict[str, Any], list[Path] | None]:
    """Query: the DynamoDB request, and the paths of its projection (None without)."""
    table, key_condition, kwargs = args[0], args[1], calls.kwargs_of(args[2])
    payload: dict[str, Any] = {"TableName": calls.table_of(table)}
    renderer = Renderer()
    if key_condition is not None:
        payload["KeyConditionExpression"] = _render(renderer.condition, key_condition)
    forward = kwargs.get(Param.SCAN_INDEX_FORWARD)
    if forward is not None:
        payload["ScanIndexForward"] = bool(forward)
    paths = _read_options(payload, kwargs, schema, renderer)
    return payload, paths


def scan_payload(
    args: tuple[Any, ...], schema: KeySchema
) -> tuple[dict[str, Any], list[Path] | None]:
    """Scan: the DynamoDB request, and the paths of its projection (None without)."""
    table, kwargs = args[0], calls.kwargs_of(args[1])
    payload: dict[str, Any] = {"TableName": calls.table_of(table)}
    for param, name in ((Param.SEGMENT, "Segment"), (Param.TOTAL_SEGMENTS, "TotalSegments")):
        value = kwargs.get(param)
        if value is not None:
            payload[name] = _int(value, name)
    paths = _read_options(payload, kwargs, schema, Renderer())
    return payload, paths


def _read_options(
    payload: dict[str, Any], kwargs: Mapping[Any, Any], schema: KeySchema, renderer: Renderer
) -> list[Path] | None:
    index = kwargs.get(Param.INDEX_NAME)
    if index is not None:
        payload["IndexName"] = calls.table_of(index, "IndexName")
    select = calls.enum_of(kwargs, Param.SELECT, SELECT)
    if select is not None:
        payload["Select"] = select
    limit = kwargs.get(Param.LIMIT)
    if limit is not None:
        payload["Limit"] = _int(limit, "Limit")
    consistent = kwargs.get(Param.CONSISTENT_READ)
    if consistent is not None:
        payload["ConsistentRead"] = bool(consistent)
    start = kwargs.get(Param.EXCLUSIVE_START_KEY)
    if start is not None:
        payload["ExclusiveStartKey"] = _start_key(start, schema, index is not None)
    condition = kwargs.get(Param.FILTER_EXPRESSION)
    if condition is not None:
        payload["FilterExpression"] = _render(renderer.condition, condition)
    paths = calls.projection(payload, kwargs, renderer, schema)
    calls.placeholders(payload, renderer)
    calls.capacity_of(payload, kwargs)
    return paths


def _render(render: Any, data: Any) -> str:
    try:
        text: str = render(data)
    except BadExpression as error:
        raise calls.invalid(f"a malformed expression: {error}") from None
    return text


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise calls.invalid(f"{name} must be an integer")
    return value


def _start_key(data: Any, schema: KeySchema, compound: bool) -> values.Item:
    """ExclusiveStartKey: the table's key bytes, or for an index a CBOR map of values."""
    if not compound:
        return calls.key_of(data, schema)
    if not isinstance(data, bytes):
        raise calls.invalid("an index's ExclusiveStartKey is a byte string")
    try:
        key = cbor.loads(data)
        if not isinstance(key, dict) or not all(isinstance(k, str) for k in key):
            raise values.BadValue("an index's ExclusiveStartKey is a map of names to values")
        return {name: values.from_cbor(value) for name, value in key.items()}
    except (cbor.Malformed, values.BadValue) as error:
        raise calls.invalid(f"a malformed ExclusiveStartKey: {error}") from None


def read_reply(
    answer: Mapping[str, Any],
    schema: KeySchema,
    lists: AttributeLists,
    paths: list[Path] | None,
    index: bool,
) -> bytes:
    """Query's or Scan's reply (``index``: the request named an index)."""
    body: dict[int, Any] = {}
    items = answer.get("Items")
    if items is not None:
        body[Reply.ITEMS] = [_item(item, schema, lists, paths) for item in items]
    for field, param in (("Count", Reply.COUNT), ("ScannedCount", Reply.SCANNED_COUNT)):
        if field in answer:
            body[param] = answer[field]
    last = answer.get("LastEvaluatedKey")
    if last is not None:
        body[Reply.LAST_EVALUATED_KEY] = (
            cbor.dumps({name: values.to_cbor(value) for name, value in last.items()})
            if index
            else values.encode_key(last, schema)
        )
    calls.capacity_reply(body, answer)
    return calls.success(body)


def _item(
    item: Mapping[str, Any], schema: KeySchema, lists: AttributeLists, paths: list[Path] | None
) -> Any:
    if paths is not None:
        return calls.projected(item, paths)
    return [values.encode_key(item, schema), calls.item_values(item, schema, lists)]
