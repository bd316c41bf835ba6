"""DAX calls to DynamoDB JSON requests, and DynamoDB JSON answers to DAX replies (sans-IO).

Each data method's positional items become the payload the HTTP side would hand the proxy
for the same call (``{"TableName": ..., "Key": ...}``), so a DAX call goes through the same
caches and the same upstream; the proxy's answer (DynamoDB JSON) becomes DAX's reply. A
reply is the success status (an empty array, ``0x80``) and the method's body items.
Anything a client could not have sent, or that this codec does not serve yet, raises
:class:`CallError`, which the caller answers with DAX's error triple (the connection lives
on: the request was read whole).

Here: the bookkeeping methods (endpoints, defineKeySchema, defineAttributeListId,
defineAttributeList); GetItem (ConsistentRead, ReturnConsumedCapacity, a projection,
answered as a map from path positions to values, list indexes included: see
:mod:`~daxproxy.dax.list_paths`); PutItem, DeleteItem and UpdateItem (conditions and
updates rendered back to text by :class:`~daxproxy.dax.expressions.Renderer`, every
ReturnValues, ReturnConsumedCapacity, ReturnItemCollectionMetrics); and the helpers the
other methods' modules share (:mod:`~daxproxy.dax.queries`, :mod:`~daxproxy.dax.batches`,
:mod:`~daxproxy.dax.transactions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daxproxy.core.keys import KeySchema
from daxproxy.dax import cbor, list_paths, values
from daxproxy.dax.attribute_lists import AttributeLists, Full
from daxproxy.dax.errors import CODES
from daxproxy.dax.expressions import BadExpression, Path, Renderer
from daxproxy.dax.methods import (
    RETURN_CONSUMED_CAPACITY,
    RETURN_ITEM_COLLECTION_METRICS,
    RETURN_VALUES,
    Param,
    Reply,
)

SUCCESS = b"\x80"
# One node, the leader (role 1), in its own availability zone.
LEADER = 1
NODE_ID = 1


class CallError(Exception):
    """A call answered with a DynamoDB-shaped error (``type`` is DynamoDB's short code)."""

    def __init__(self, type_: str, message: str, codes: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.codes = codes if codes is not None else CODES.get(type_)


def invalid(message: str) -> CallError:
    return CallError("ValidationException", message)


def success(*items: Any) -> bytes:
    """A reply: the success status, then each item."""
    return SUCCESS + b"".join(cbor.dumps(item) for item in items)


# -- bookkeeping -------------------------------------------------------------------------


def endpoints_reply(address: bytes, port: int, hostname: str, zone: str = "local") -> bytes:
    """The one endpoint clients should use: this node, the leader, at ``address`` (the 4 or
    16 bytes of an IP address of the family the client connected with) and ``port``."""
    endpoint = {0: NODE_ID, 1: hostname, 2: address, 3: port, 4: LEADER, 5: zone, 6: 0}
    return success([endpoint])


def table_of(arg: Any, what: str = "TableName") -> str:
    """A table (or index) name from a positional slot (bytes there; text is taken too)."""
    if isinstance(arg, bytes):
        try:
            arg = arg.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(f"{what} is not UTF-8") from None
    if not isinstance(arg, str) or not arg:
        raise invalid(f"{what} must be a non-empty string")
    return arg


def key_schema_reply(schema: KeySchema) -> bytes:
    """defineKeySchema's reply: name to type, the partition key first."""
    types = {schema.hash_name: schema.hash_type}
    if schema.range_name is not None and schema.range_type is not None:
        types[schema.range_name] = schema.range_type
    return success(types)


def attribute_list_id_reply(arg: Any, lists: AttributeLists) -> bytes:
    if not isinstance(arg, list) or not all(isinstance(name, str) for name in arg):
        raise invalid("an attribute list is an array of names")
    try:
        return success(lists.id_of(arg))
    except Full as error:
        raise CallError("LimitExceededException", str(error)) from None


def attribute_list_reply(arg: Any, lists: AttributeLists) -> bytes:
    names = lists.names_of(arg) if isinstance(arg, int) and not isinstance(arg, bool) else None
    if names is None:
        raise invalid(f"unknown attribute list id {shown(arg)}")
    return success(list(names))


# -- requests ----------------------------------------------------------------------------


def kwargs_of(arg: Any) -> Mapping[Any, Any]:
    """The optional-argument map (null: none)."""
    if arg is None:
        return {}
    if not isinstance(arg, Mapping):
        raise invalid("the optional arguments are not a map")
    return arg


def shown(value: Any) -> str:
    """A value the client sent, as an error message quotes it: a number of 64 bits, else
    its type alone (a value can be of any size; past 4300 digits ``str`` itself raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64:
        return str(value)
    return f"of type {type(value).__name__}"


def named(value: Any, names: Mapping[int, str]) -> str | None:
    """The name DAX's number ``value`` stands for; None for any other value (a bool, an
    array: a value of any type can arrive where a number should)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return names.get(value)


def enum_of(kwargs: Mapping[Any, Any], param: Param, names: Mapping[int, str]) -> str | None:
    value = kwargs.get(param)
    if value is None:
        return None
    name = named(value, names)
    if name is None:
        raise invalid(f"{param.name} has no value {shown(value)}")
    return name


def key_of(arg: Any, schema: KeySchema) -> values.Item:
    if not isinstance(arg, bytes):
        raise invalid("a key is a byte string")
    try:
        return values.decode_key(arg, schema)
    except values.BadValue as error:
        raise invalid(f"the key does not fit the table's key schema: {error}") from None


def capacity_of(payload: dict[str, Any], kwargs: Mapping[Any, Any]) -> None:
    capacity = enum_of(kwargs, Param.RETURN_CONSUMED_CAPACITY, RETURN_CONSUMED_CAPACITY)
    if capacity is not None:
        payload["ReturnConsumedCapacity"] = capacity


def get_item_payload(
    args: tuple[Any, ...], schema: KeySchema
) -> tuple[dict[str, Any], list[Path] | None]:
    """GetItem: ``table, key, kwargs`` as DynamoDB's GetItem request, and the paths of its
    projection (None without one), whose positions the reply's values are keyed by."""
    table, key, kwargs = args[0], args[1], kwargs_of(args[2])
    payload: dict[str, Any] = {"TableName": table_of(table), "Key": key_of(key, schema)}
    renderer = Renderer()
    paths = projection(payload, kwargs, renderer, schema)
    placeholders(payload, renderer)
    consistent = kwargs.get(Param.CONSISTENT_READ)
    if consistent is not None:
        payload["ConsistentRead"] = bool(consistent)
    capacity_of(payload, kwargs)
    return payload, paths


def projection(
    payload: dict[str, Any], kwargs: Mapping[Any, Any], renderer: Renderer, schema: KeySchema
) -> list[Path] | None:
    """The request's ProjectionExpression, rendered into ``payload``; its paths. With list
    indexes, the paths rendered are :func:`list_paths.fetched`'s, cut before each index."""
    data = kwargs.get(Param.PROJECTION_EXPRESSION)
    if data is None:
        return None
    try:
        paths = renderer.projection(data)
    except BadExpression as error:
        raise invalid(f"a malformed projection: {error}") from None
    sent = paths
    if list_paths.has_index(paths):
        try:
            sent = list_paths.fetched(paths, schema.names, renderer.size(paths))
        except list_paths.Refused as error:
            raise invalid(str(error)) from None
    payload["ProjectionExpression"] = ", ".join(renderer.text(path) for path in sent)
    return paths


def placeholders(payload: dict[str, Any], renderer: Renderer) -> None:
    """The names and values of every expression the renderer rendered for ``payload``."""
    if renderer.names:
        payload["ExpressionAttributeNames"] = renderer.names
    if renderer.values:
        payload["ExpressionAttributeValues"] = renderer.values


def put_item_payload(
    args: tuple[Any, ...], schema: KeySchema, lists: AttributeLists
) -> dict[str, Any]:
    """PutItem: ``table, key, values, kwargs`` as DynamoDB's PutItem request."""
    table, key, payload_bytes, kwargs = args[0], args[1], args[2], kwargs_of(args[3])
    item = item_of(payload_bytes, lists)
    item.update(key_of(key, schema))  # the key bytes name the item
    payload: dict[str, Any] = {"TableName": table_of(table), "Item": item}
    _write_options(payload, kwargs, ("NONE", "ALL_OLD"))
    return payload


def item_of(payload_bytes: Any, lists: AttributeLists) -> values.Item:
    """The attributes of a values payload, named by its attribute list."""
    if not isinstance(payload_bytes, bytes):
        raise invalid("an item's values are a byte string")
    try:
        list_id, raw = values.values_list_id(payload_bytes)
        names = lists.names_of(list_id)
        if names is None:
            raise invalid(f"unknown attribute list id {shown(list_id)}")
        return values.decode_values(raw, names)
    except values.BadValue as error:
        raise invalid(f"malformed item values: {error}") from None


def delete_item_payload(args: tuple[Any, ...], schema: KeySchema) -> dict[str, Any]:
    """DeleteItem: ``table, key, kwargs`` as DynamoDB's DeleteItem request."""
    table, key, kwargs = args[0], args[1], kwargs_of(args[2])
    payload: dict[str, Any] = {"TableName": table_of(table), "Key": key_of(key, schema)}
    _write_options(payload, kwargs, ("NONE", "ALL_OLD"))
    return payload


def update_item_payload(args: tuple[Any, ...], schema: KeySchema) -> dict[str, Any]:
    """UpdateItem: ``table, key, kwargs`` as DynamoDB's UpdateItem request."""
    table, key, kwargs = args[0], args[1], kwargs_of(args[2])
    payload: dict[str, Any] = {"TableName": table_of(table), "Key": key_of(key, schema)}
    _write_options(payload, kwargs, tuple(RETURN_VALUES.values()))
    return payload


def _write_options(
    payload: dict[str, Any], kwargs: Mapping[Any, Any], returns_allowed: tuple[str, ...]
) -> None:
    """A write's options: its expressions, ReturnValues, the capacity and metrics asked."""
    renderer = Renderer()
    try:
        update = kwargs.get(Param.UPDATE_EXPRESSION)
        if update is not None:
            payload["UpdateExpression"] = renderer.update(update)
        condition = kwargs.get(Param.CONDITION_EXPRESSION)
        if condition is not None:
            payload["ConditionExpression"] = renderer.condition(condition)
    except BadExpression as error:
        raise invalid(f"a malformed expression: {error}") from None
    placeholders(payload, renderer)
    returns = enum_of(kwargs, Param.RETURN_VALUES, RETURN_VALUES)
    if returns is not None and returns not in returns_allowed:
        raise invalid(f"ReturnValues {returns} is not valid here")
    if returns is not None:
        payload["ReturnValues"] = returns
    metrics = enum_of(kwargs, Param.RETURN_ITEM_COLLECTION_METRICS, RETURN_ITEM_COLLECTION_METRICS)
    if metrics is not None:
        payload["ReturnItemCollectionMetrics"] = metrics
    capacity_of(payload, kwargs)


# -- replies -----------------------------------------------------------------------------


def list_id(names: Sequence[str], lists: AttributeLists) -> int:
    """The id of an attribute list, named now if new (LimitExceeded when none is left)."""
    try:
        return lists.id_of(names)
    except Full as error:
        raise CallError("LimitExceededException", str(error)) from None


def item_values(item: Mapping[str, Any], schema: KeySchema, lists: AttributeLists) -> bytes:
    """An item as a values payload (its key left out: the client puts back its own)."""
    names = values.attribute_names(item, schema)
    return values.encode_values(item, names, list_id(names, lists))


def consumed_capacity(capacity: Mapping[str, Any]) -> bytes:
    """ConsumedCapacity as the single-table methods carry it: table name, units, the
    table's units, then the global and local indexes' units (null when absent)."""
    table = capacity.get("Table")
    parts = [
        capacity.get("TableName", ""),
        _units(capacity.get("CapacityUnits", 0)),
        None if table is None else _units(table.get("CapacityUnits", 0)),
        _indexes(capacity.get("GlobalSecondaryIndexes")),
        _indexes(capacity.get("LocalSecondaryIndexes")),
    ]
    return b"".join(cbor.dumps(part) for part in parts)


def _units(value: Any) -> float | int:
    return value if isinstance(value, int | float) else float(value)


def _indexes(indexes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if indexes is None:
        return None
    return {name: _units(index.get("CapacityUnits", 0)) for name, index in indexes.items()}


def get_item_reply(
    answer: Mapping[str, Any],
    schema: KeySchema,
    lists: AttributeLists,
    paths: list[Path] | None = None,
) -> bytes:
    """GetItem's reply: null when there is nothing to say, else a map with the item and the
    consumed capacity. The item is a values payload, or with a projection a map from each
    path's position to the value at its end (absent paths left out). Never ``{0: null}``,
    which the Python client cannot read."""
    body: dict[int, Any] = {}
    item = answer.get("Item")
    if item is not None and paths is not None:
        body[Reply.ITEM] = projected(item, paths)
    elif item is not None:
        body[Reply.ITEM] = item_values(item, schema, lists)
    capacity_reply(body, answer)
    return success(body or None)


def projected(item: Mapping[str, Any], paths: list[Path]) -> dict[int, Any]:
    """The value at the end of each path in a projected item, by position (the item holds
    each list whole: see :func:`projection`)."""
    out = {}
    for position, path in enumerate(paths):
        value: Any = item.get(str(path[0]))
        for step in path[1:]:
            if isinstance(step, int):
                inner = value.get("L") if isinstance(value, Mapping) else None
                value = inner[step] if isinstance(inner, list) and step < len(inner) else None
            else:
                inner = value.get("M") if isinstance(value, Mapping) else None
                value = inner.get(step) if isinstance(inner, Mapping) else None
        if value is not None:
            out[position] = values.to_cbor(value)
    return out


def write_reply(
    answer: Mapping[str, Any],
    schema: KeySchema,
    lists: AttributeLists,
    returns: str | None = None,
) -> bytes:
    """PutItem's, DeleteItem's and UpdateItem's reply: the returned attributes, capacity,
    item collection metrics. The attributes are a values payload (the client puts back
    the key from its request), or for UPDATED_OLD and UPDATED_NEW (``returns``) an
    attribute-list id then a map from positions in that list to values."""
    body: dict[int, Any] = {}
    attributes = answer.get("Attributes")
    if attributes is not None and returns in ("UPDATED_OLD", "UPDATED_NEW"):
        # Empty ones too (an id and an empty map): both clients read the map in any case.
        body[Reply.ATTRIBUTES] = _updated_values(attributes, lists)
    elif attributes is not None:
        body[Reply.ATTRIBUTES] = item_values(attributes, schema, lists)
    capacity_reply(body, answer)
    metrics = answer.get("ItemCollectionMetrics")
    if metrics is not None:
        body[Reply.ITEM_COLLECTION_METRICS] = collection_metrics(metrics)
    return success(body or None)


def _updated_values(attributes: Mapping[str, Any], lists: AttributeLists) -> bytes:
    names = sorted(attributes)
    positions = {i: values.to_cbor(attributes[name]) for i, name in enumerate(names)}
    return cbor.dumps(list_id(names, lists)) + cbor.dumps(positions)


def capacity_reply(body: dict[int, Any], answer: Mapping[str, Any]) -> None:
    capacity = answer.get("ConsumedCapacity")
    if capacity is not None:
        body[Reply.CONSUMED_CAPACITY] = consumed_capacity(capacity)


def collection_metrics(metrics: Mapping[str, Any]) -> bytes:
    """The partition key's value, then the size estimate's bounds (floats)."""
    ((_, key),) = metrics["ItemCollectionKey"].items()
    low, high = metrics["SizeEstimateRangeGB"]
    return b"".join(
        (cbor.dumps(values.to_cbor(key)), cbor.dumps(float(low)), cbor.dumps(float(high)))
    )
