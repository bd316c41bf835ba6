"""Items, keys and attribute values between DAX's CBOR and DynamoDB's JSON.

An attribute value in DynamoDB JSON (``{"S": "x"}``, ``{"B": "<base64>"}``, ...) is one
CBOR item on DAX's wire: S text, N an int or a tag-4 decimal (the JS client also sends
float64; a bignum decodes to an int), B bytes, BOOL, NULL, L an array, M a map of text to
values, SS/NS/BS an array under tag 3321/3322/3323. :func:`to_cbor` and :func:`from_cbor`
convert one value; a value DAX could not have sent raises :class:`BadValue`.

Keys (:func:`encode_key`, :func:`decode_key`) follow the table's :class:`KeySchema`: with a
partition key only, an S or B key is its raw bytes and an N key one CBOR number; with a
sort key too, the partition key is one CBOR item and the sort key the raw rest (S as UTF-8,
B as is, N as :mod:`~daxproxy.dax.lexdecimal`). A values payload (:func:`encode_values`,
:func:`decode_values`) is an attribute-list id followed by the non-key attributes' values in
that list's order, with no count: the list is the item's non-key names, sorted.

Numbers decode to the text the clients would give (``str`` of the int or Decimal); numbers
encode as the Python client writes them: text with ``.``, ``e`` or ``E`` as a decimal
fraction, any other as an int.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import cbor2

from daxproxy.core.keys import KeySchema
from daxproxy.dax import cbor, lexdecimal

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

_SET_TAGS = {cbor.TAG_STRING_SET: "SS", cbor.TAG_NUMBER_SET: "NS", cbor.TAG_BINARY_SET: "BS"}


class BadValue(ValueError):
    """Bytes or a value that no DAX client would send; the message says what is wrong."""


# -- one attribute value ---------------------------------------------------------------


def from_cbor(value: Any) -> AttributeValue:
    """The DynamoDB JSON attribute value of a decoded CBOR item."""
    if value is None:
        return {"NULL": True}
    if value is True or value is False:
        return {"BOOL": value}
    convert = _FROM_CBOR.get(type(value))
    if convert is None:
        raise BadValue(f"not an attribute value: {type(value).__name__}")
    return convert(value)


def _from_map(value: Mapping[Any, Any]) -> AttributeValue:
    if not all(isinstance(k, str) for k in value):
        raise BadValue("a map attribute's names must be text")
    return {"M": {k: from_cbor(v) for k, v in value.items()}}


def _from_tag(value: cbor2.CBORTag) -> AttributeValue:
    kind = _SET_TAGS.get(value.tag)
    if kind is None:
        raise BadValue(f"not an attribute value: CBOR tag {value.tag}")
    members = value.value
    if not isinstance(members, list | tuple):
        raise BadValue(f"a {kind} must be an array")
    return {kind: [_set_member(kind, m) for m in members]}


_FROM_CBOR: dict[type, Callable[[Any], AttributeValue]] = {
    str: lambda v: {"S": v},
    bytes: lambda v: {"B": _b64(v)},
    int: lambda v: {"N": number_text(v)},
    Decimal: lambda v: {"N": number_text(v)},
    float: lambda v: {"N": number_text(v)},
    list: lambda v: {"L": [from_cbor(x) for x in v]},
    tuple: lambda v: {"L": [from_cbor(x) for x in v]},
    dict: _from_map,
    cbor2.frozendict: _from_map,
    cbor2.CBORTag: _from_tag,
}


def _set_member(kind: str, member: Any) -> str:
    if kind == "SS" and isinstance(member, str):
        return member
    if kind == "BS" and isinstance(member, bytes):
        return _b64(member)
    if kind == "NS" and isinstance(member, int | Decimal | float) and member is not True:
        return number_text(member)
    raise BadValue(f"a {kind} member of the wrong type: {type(member).__name__}")


# DynamoDB's numbers are below 10**126 in magnitude (2**419 and a bit): a bignum past that is
# refused before Python is asked for its digits (past 4300 of them it raises ValueError).
_MAX_INT_BITS = 420


def number_text(value: int | Decimal | float) -> str:
    """A decoded number as DynamoDB JSON's text (what the clients' ``str`` gives)."""
    if isinstance(value, bool):
        raise BadValue("a boolean is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadValue("a number must be finite")
        return repr(value)
    if isinstance(value, Decimal) and not value.is_finite():
        raise BadValue("a number must be finite")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise BadValue("a number past DynamoDB's range")
    return str(value)


def to_cbor(value: Mapping[str, Any]) -> Any:
    """The CBOR item (before encoding) of a DynamoDB JSON attribute value."""
    if len(value) != 1:
        raise BadValue("an attribute value has exactly one type")
    ((kind, inner),) = value.items()
    convert = _TO_CBOR.get(kind)
    if convert is None:
        raise BadValue(f"unknown attribute value type {kind!r}")
    return convert(inner)


def number(text: str) -> int | Decimal:
    """A DynamoDB number's text as the Python client puts it on the wire."""
    try:
        if any(c in text for c in ".eE"):
            return Decimal(text)
        return int(text)
    except (ValueError, InvalidOperation):
        raise BadValue(f"not a number: {text!r}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadValue("binary value is not base64") from None


_TO_CBOR: dict[str, Callable[[Any], Any]] = {
    "S": lambda v: v,
    "N": number,
    "B": _unb64,
    "BOOL": bool,
    "NULL": lambda v: None,
    "L": lambda v: [to_cbor(x) for x in v],
    "M": lambda v: {k: to_cbor(x) for k, x in sorted(v.items())},  # sorted, as the client
    "SS": lambda v: cbor2.CBORTag(cbor.TAG_STRING_SET, list(v)),
    "NS": lambda v: cbor2.CBORTag(cbor.TAG_NUMBER_SET, [number(x) for x in v]),
    "BS": lambda v: cbor2.CBORTag(cbor.TAG_BINARY_SET, [_unb64(x) for x in v]),
}


# -- keys ------------------------------------------------------------------------------


def encode_key(key: Mapping[str, AttributeValue], schema: KeySchema) -> bytes:
    """A key's bytes (the key may be a whole item: other attributes are ignored)."""
    hash_value = _key_part(key, schema.hash_name, schema.hash_type)
    if schema.range_name is None:
        if schema.hash_type == "N":
            return cbor.dumps(number(hash_value))
        return _raw(schema.hash_type, hash_value)
    head = cbor.dumps(
        number(hash_value) if schema.hash_type == "N" else to_cbor({schema.hash_type: hash_value})
    )
    assert schema.range_type is not None
    range_value = _key_part(key, schema.range_name, schema.range_type)
    if schema.range_type == "N":
        try:
            return head + lexdecimal.encode(Decimal(range_value))
        except (ValueError, InvalidOperation):
            raise BadValue(f"not a number: {range_value!r}") from None
    return head + _raw(schema.range_type, range_value)


def _key_part(key: Mapping[str, AttributeValue], name: str, kind: str) -> Any:
    value = key.get(name)
    if not isinstance(value, Mapping) or kind not in value:
        raise BadValue(f"the key has no {kind} attribute {name!r}")
    return value[kind]


def _raw(kind: str, value: Any) -> bytes:
    return value.encode("utf-8") if kind == "S" else _unb64(value)


def decode_key(data: bytes, schema: KeySchema) -> Item:
    """The key (DynamoDB JSON) that ``data`` encodes for a table of ``schema``."""
    if schema.range_name is None:
        return {schema.hash_name: _part(schema.hash_type, data, whole=True)}
    stream = io.BytesIO(data)
    try:
        head = cbor.loads_from(stream)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as error:
        raise BadValue(f"the key's partition key is not CBOR: {error}") from None
    hash_value = _typed(schema.hash_type, head)
    rest = data[stream.tell() :]
    assert schema.range_type is not None
    return {
        schema.hash_name: hash_value,
        schema.range_name: _part(schema.range_type, rest, whole=False),
    }


def _part(kind: str, data: bytes, *, whole: bool) -> AttributeValue:
    """A key part from its raw bytes (``whole``: a partition key alone, N as CBOR)."""
    try:
        if kind == "S":
            return {"S": data.decode("utf-8")}
        if kind == "B":
            return {"B": _b64(data)}
        if whole:
            return _typed("N", cbor.loads(data))
        return {"N": str(lexdecimal.decode(data))}
    except (UnicodeDecodeError, ValueError, cbor.Malformed) as error:
        raise BadValue(f"a malformed {kind} key: {error}") from None


def _typed(kind: str, value: Any) -> AttributeValue:
    av = from_cbor(value)
    if kind not in av:
        raise BadValue(f"the key's {kind} attribute has the wrong type")
    return av


# -- values payloads -------------------------------------------------------------------


def attribute_names(item: Mapping[str, Any], schema: KeySchema) -> tuple[str, ...]:
    """The attribute list of ``item``: its non-key names, sorted (the clients' order)."""
    keys = schema.names
    return tuple(sorted(name for name in item if name not in keys))


def encode_values(item: Mapping[str, AttributeValue], names: Sequence[str], list_id: int) -> bytes:
    """A values payload: ``list_id`` then the value of each of ``names``, in order."""
    return cbor.dumps(list_id) + b"".join(cbor.dumps(to_cbor(item[name])) for name in names)


def values_list_id(data: bytes) -> tuple[int, list[Any]]:
    """A values payload's attribute-list id and its raw decoded values."""
    try:
        items = cbor.loads_all(data)
    except cbor.Malformed as error:
        raise BadValue(str(error)) from None
    if not items or not isinstance(items[0], int) or isinstance(items[0], bool):
        raise BadValue("a values payload starts with its attribute-list id")
    return items[0], items[1:]


def decode_values(values: Sequence[Any], names: Sequence[str]) -> Item:
    """The attributes of a values payload's ``values``, named by its attribute list."""
    if len(values) != len(names):
        raise BadValue(
            f"a values payload holds {len(values)} values for {len(names)} attribute names"
        )
    return {name: from_cbor(value) for name, value in zip(names, values, strict=True)}
