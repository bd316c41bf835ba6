"""BatchGetItem and BatchWriteItem between DAX's wire and DynamoDB JSON (sans-IO).

The request is a map from table name (text here, unlike the positional slots) to
``[consistent read (bool), projection (compiled, or null), [key bytes, ...]]``, then the
options (ReturnConsumedCapacity). :func:`tables_of` names the tables, whose key schemas
the caller looks up before :func:`batch_get_payload` decodes the keys.

The reply is not one map but three items after the status: ``[Responses,
UnprocessedKeys]`` (an array of two maps) and then, on its own, the array of
ConsumedCapacity (the clients read it so: a known quirk of DAX's). Responses maps a
table to a flat array alternating key bytes and values payload, or with a projection to
an array of projected maps; UnprocessedKeys maps a table to its keys' bytes.

BatchWriteItem's request maps a table to a flat array alternating key bytes and a values
payload (a put) or null (a delete), then the options (ReturnConsumedCapacity,
ReturnItemCollectionMetrics). Its reply is three items after the status, none wrapped:
UnprocessedItems in the request's form, the array of ConsumedCapacity, and
ItemCollectionMetrics (a table to an array of metrics). An unprocessed put's values
payload names every attribute, key included: the client reads the item from it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, cbor, values
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.expressions import Path, Renderer
from daxproxy.dax.methods import RETURN_ITEM_COLLECTION_METRICS, Param

Paths = dict[str, list[Path] | None]


def tables_of(args: tuple[Any, ...]) -> list[str]:
    """The tables a BatchGetItem or BatchWriteItem names."""
    requests = args[0]
    if not isinstance(requests, Mapping) or not requests:
        raise calls.invalid("RequestItems is a non-empty map of tables")
    if not all(isinstance(table, str) and table for table in requests):
        raise calls.invalid("RequestItems is keyed by table names")
    return list(requests)


def batch_get_payload(
    args: tuple[Any, ...], schemas: Mapping[str, KeySchema]
) -> tuple[dict[str, Any], Paths]:
    """The DynamoDB request, and each table's projection paths (None without one)."""
    kwargs = calls.kwargs_of(args[1])
    items: dict[str, Any] = {}
    paths: Paths = {}
    for table, spec in args[0].items():
        if not isinstance(spec, list) or len(spec) != 3 or not isinstance(spec[2], list):
            raise calls.invalid("a table's request is [consistent read, projection, keys]")
        consistent, projection, keys = spec
        request: dict[str, Any] = {"Keys": [calls.key_of(k, schemas[table]) for k in keys]}
        if consistent:
            request["ConsistentRead"] = True
        renderer = Renderer()
        paths[table] = calls.projection(
            request, {Param.PROJECTION_EXPRESSION: projection}, renderer, schemas[table]
        )
        calls.placeholders(request, renderer)
        items[table] = request
    payload: dict[str, Any] = {"RequestItems": items}
    calls.capacity_of(payload, kwargs)
    return payload, paths


def batch_get_reply(
    answer: Mapping[str, Any],
    schemas: Mapping[str, KeySchema],
    lists: AttributeLists,
    paths: Paths,
) -> bytes:
    responses: dict[str, list[Any]] = {}
    for table, items in answer.get("Responses", {}).items():
        schema, table_paths = schemas[table], paths.get(table)
        out: list[Any] = []
        for item in items:
            if table_paths is not None:
                out.append(calls.projected(item, table_paths))
            else:
                out += [values.encode_key(item, schema), calls.item_values(item, schema, lists)]
        responses[table] = out
    unprocessed = {
        table: [values.encode_key(key, schemas[table]) for key in request.get("Keys", [])]
        for table, request in answer.get("UnprocessedKeys", {}).items()
    }
    capacities = [calls.consumed_capacity(c) for c in answer.get("ConsumedCapacity", [])]
    return calls.success([responses, unprocessed]) + cbor.dumps(capacities)


def batch_write_payload(
    args: tuple[Any, ...], schemas: Mapping[str, KeySchema], lists: AttributeLists
) -> dict[str, Any]:
    """The DynamoDB BatchWriteItem request."""
    kwargs = calls.kwargs_of(args[1])
    items: dict[str, list[dict[str, Any]]] = {}
    for table, writes in args[0].items():
        if not isinstance(writes, list) or not writes or len(writes) % 2:
            raise calls.invalid("a table's writes are pairs of key and values (or null)")
        schema, requests = schemas[table], []
        for key_bytes, payload_bytes in zip(writes[::2], writes[1::2], strict=True):
            key = calls.key_of(key_bytes, schema)
            if payload_bytes is None:
                requests.append({"DeleteRequest": {"Key": key}})
            else:
                item = calls.item_of(payload_bytes, lists)
                item.update(key)
                requests.append({"PutRequest": {"Item": item}})
        items[table] = requests
    payload: dict[str, Any] = {"RequestItems": items}
    metrics = calls.enum_of(
        kwargs, Param.RETURN_ITEM_COLLECTION_METRICS, RETURN_ITEM_COLLECTION_METRICS
    )
    if metrics is not None:
        payload["ReturnItemCollectionMetrics"] = metrics
    calls.capacity_of(payload, kwargs)
    return payload


def batch_write_reply(
    answer: Mapping[str, Any], schemas: Mapping[str, KeySchema], lists: AttributeLists
) -> bytes:
    unprocessed: dict[str, list[Any]] = {}
    for table, requests in answer.get("UnprocessedItems", {}).items():
        schema, out = schemas[table], list[Any]()
        for request in requests:
            if "PutRequest" in request:
                item = request["PutRequest"]["Item"]
                names = sorted(item)
                out += [
                    values.encode_key(item, schema),
                    values.encode_values(item, names, calls.list_id(names, lists)),
                ]
            else:
                out += [values.encode_key(request["DeleteRequest"]["Key"], schema), None]
        unprocessed[table] = out
    capacities = [calls.consumed_capacity(c) for c in answer.get("ConsumedCapacity", [])]
    metrics = {
        table: [calls.collection_metrics(m) for m in table_metrics]
        for table, table_metrics in answer.get("ItemCollectionMetrics", {}).items()
    }
    return calls.SUCCESS + b"".join(cbor.dumps(part) for part in (unprocessed, capacities, metrics))
