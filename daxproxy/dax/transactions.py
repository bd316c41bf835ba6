"""TransactGetItems and TransactWriteItems between DAX's wire and DynamoDB JSON (sans-IO).

Both arrive as parallel arrays, one slot per action. TransactGetItems: tables (bytes),
keys (bytes), projections (compiled, or null), then options (ReturnConsumedCapacity).
TransactWriteItems: operations (2 Put, 7 Delete, 9 Update, 12 ConditionCheck), tables,
keys, values payloads (a put's, else null), return values (unused: null), return values
on condition check failure (1 NONE, 2 ALL_OLD), conditions and updates (compiled, or
null), then options (ReturnConsumedCapacity, ReturnItemCollectionMetrics,
ClientRequestToken as text). Each action's expressions get their own placeholders, as
each DynamoDB action has its own ExpressionAttributeNames and Values.

TransactGetItems' reply is ``[[item or null, ...], [capacity, ...]]``: an item is a values
payload (the client puts back its key) or a projected map. TransactWriteItems' is
``[null, [capacity, ...], {table: [metrics, ...]}]``. Capacity here is a map keyed by
small ints (:data:`CAPACITY_FIELDS`), not the byte string of the single-item methods;
the array must be present, empty when there is none. A cancelled TransactWriteItems'
reasons carry each failed condition's old item as a values payload
(:func:`cancellation_reasons`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, errors
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.errors import Reason
from daxproxy.dax.expressions import BadExpression, Path, Renderer
from daxproxy.dax.methods import RETURN_ITEM_COLLECTION_METRICS, Param

# DynamoDBOperationNumerals in the clients.
_ACTIONS = {2: "Put", 7: "Delete", 9: "Update", 12: "ConditionCheck"}
_ON_FAILURE = {1: "NONE", 2: "ALL_OLD"}
CAPACITY_FIELDS = {
    "CapacityUnits": 1,
    "ReadCapacityUnits": 2,
    "WriteCapacityUnits": 3,
    "TableName": 4,
    "Table": 5,
    "GlobalSecondaryIndexes": 6,
    "LocalSecondaryIndexes": 7,
}


def tables_of(args: tuple[Any, ...], slot: int) -> list[str]:
    """The tables the actions name (the array in positional ``slot``)."""
    tables = args[slot]
    if not isinstance(tables, list) or not tables:
        raise calls.invalid("a transaction names its tables in a non-empty array")
    return [calls.table_of(t) for t in tables]


def _column(args: tuple[Any, ...], slot: int, count: int, what: str) -> list[Any]:
    column = args[slot]
    if column is None:
        return [None] * count
    if not isinstance(column, list) or len(column) != count:
        raise calls.invalid(f"a transaction's {what} must be one per action")
    return column


def transact_get_payload(
    args: tuple[Any, ...], schemas: Mapping[str, KeySchema]
) -> tuple[dict[str, Any], list[list[Path] | None]]:
    tables = tables_of(args, 0)
    keys = _column(args, 1, len(tables), "keys")
    projections = _column(args, 2, len(tables), "projections")
    actions, paths = [], []
    for table, key, projection in zip(tables, keys, projections, strict=True):
        get: dict[str, Any] = {"TableName": table, "Key": calls.key_of(key, schemas[table])}
        renderer = Renderer()
        asked = {Param.PROJECTION_EXPRESSION: projection}
        paths.append(calls.projection(get, asked, renderer, schemas[table]))
        calls.placeholders(get, renderer)
        actions.append({"Get": get})
    payload: dict[str, Any] = {"TransactItems": actions}
    calls.capacity_of(payload, calls.kwargs_of(args[3]))
    return payload, paths


def transact_get_reply(
    answer: Mapping[str, Any],
    schemas: Mapping[str, KeySchema],
    tables: list[str],
    lists: AttributeLists,
    paths: list[list[Path] | None],
) -> bytes:
    items: list[Any] = []
    for i, response in enumerate(answer.get("Responses", [])):
        item = response.get("Item") if isinstance(response, Mapping) else None
        if item is None:
            items.append(None)
        elif paths[i] is not None:
            items.append(calls.projected(item, paths[i] or []))
        else:
            items.append(calls.item_values(item, schemas[tables[i]], lists))
    return calls.success([items, _capacities(answer)])


def transact_write_payload(
    args: tuple[Any, ...], schemas: Mapping[str, KeySchema], lists: AttributeLists
) -> dict[str, Any]:
    tables = tables_of(args, 1)
    count = len(tables)
    operations = _column(args, 0, count, "operations")
    keys = _column(args, 2, count, "keys")
    items = _column(args, 3, count, "values")
    on_failure = _column(args, 5, count, "return values on condition check failure")
    conditions = _column(args, 6, count, "conditions")
    updates = _column(args, 7, count, "updates")
    actions = []
    for i, table in enumerate(tables):
        kind = calls.named(operations[i], _ACTIONS)
        if kind is None:
            raise calls.invalid(f"unknown transaction operation {calls.shown(operations[i])}")
        key = calls.key_of(keys[i], schemas[table])
        action: dict[str, Any] = {"TableName": table}
        if kind == "Put":
            action["Item"] = {**calls.item_of(items[i], lists), **key}
        else:
            action["Key"] = key
        renderer = Renderer()
        _render(action, "UpdateExpression", renderer.update, updates[i], kind == "Update")
        _render(
            action,
            "ConditionExpression",
            renderer.condition,
            conditions[i],
            kind == "ConditionCheck",
        )
        calls.placeholders(action, renderer)
        if on_failure[i] is not None:
            if calls.named(on_failure[i], _ON_FAILURE) is None:
                raise calls.invalid("ReturnValuesOnConditionCheckFailure is 1 or 2")
            if on_failure[i] != 1:
                action["ReturnValuesOnConditionCheckFailure"] = _ON_FAILURE[on_failure[i]]
        actions.append({kind: action})
    kwargs = calls.kwargs_of(args[8])
    payload: dict[str, Any] = {"TransactItems": actions}
    metrics = calls.enum_of(
        kwargs, Param.RETURN_ITEM_COLLECTION_METRICS, RETURN_ITEM_COLLECTION_METRICS
    )
    if metrics is not None:
        payload["ReturnItemCollectionMetrics"] = metrics
    token = kwargs.get(Param.CLIENT_REQUEST_TOKEN)
    if token is not None:
        if not isinstance(token, str):
            raise calls.invalid("ClientRequestToken is text")
        payload["ClientRequestToken"] = token
    calls.capacity_of(payload, kwargs)
    return payload


def _render(
    action: dict[str, Any], name: str, render: Callable[[Any], str], data: Any, needed: bool
) -> None:
    if data is None:
        if needed:
            raise calls.invalid(f"this transaction action needs its {name}")
        return
    try:
        action[name] = render(data)
    except BadExpression as error:
        raise calls.invalid(f"a malformed expression: {error}") from None


def cancellation_reasons(
    reasons: Sequence[Mapping[str, Any]],
    tables: Sequence[str],
    schemas: Mapping[str, KeySchema],
    lists: AttributeLists,
) -> list[Reason]:
    """A cancelled TransactWriteItems' reasons (DynamoDB's CancellationReasons, one per
    action, in order) as DAX sends them: code, message, and the old item a failed
    condition returns (ReturnValuesOnConditionCheckFailure ALL_OLD) as a values payload,
    its key left out (the JS client puts back the key of that action from its request)."""
    out: list[Reason] = []
    for i, cancellation in enumerate(reasons):
        item, payload = cancellation.get("Item"), None
        if isinstance(item, Mapping) and i < len(tables):
            try:
                payload = calls.item_values(item, schemas[tables[i]], lists)
            except calls.CallError:  # no attribute list left: the reason without its item
                payload = None
        out.append(errors.reason(cancellation, payload))
    return out


def transact_write_reply(answer: Mapping[str, Any]) -> bytes:
    metrics = {
        table: [calls.collection_metrics(m) for m in table_metrics]
        for table, table_metrics in answer.get("ItemCollectionMetrics", {}).items()
    }
    return calls.success([None, _capacities(answer), metrics])


def _capacities(answer: Mapping[str, Any]) -> list[dict[int, Any]]:
    return [_capacity_map(c) for c in answer.get("ConsumedCapacity", [])]


def _capacity_map(capacity: Mapping[str, Any]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for name, code in CAPACITY_FIELDS.items():
        value = capacity.get(name)
        if value is None:
            continue
        if name == "Table":
            value = _capacity_map(value)
        elif name in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            value = {index: _capacity_map(v) for index, v in value.items()}
        out[code] = value
    return out
