"""Canonical primary keys: one cache key for every spelling of the same DynamoDB key.

Numbers compare numerically (``"1"``, ``"1.0"`` and ``"10E-1"`` are one key), binary by its
decoded bytes, strings exactly. A key is only canonical against its table's
:class:`KeySchema`: exactly the schema's attributes, each of the schema's type. Anything
else (a missing or extra attribute, a wrong type, an empty string, an invalid number) raises
:class:`NotCanonical`, and the caller forwards the request so that DynamoDB gives its own
ValidationException; the proxy never guesses.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# DynamoDB numbers have up to 38 significant digits and exponents from -130 to +125.
_NUMBERS = decimal.Context(
    prec=38,
    Emin=-130,
    Emax=125,
    traps=[decimal.Inexact, decimal.Overflow, decimal.Underflow, decimal.Subnormal],
)
# The spellings the proxy accepts; anything else (a sign, underscores, spaces) is DynamoDB's
# to judge.
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_MAX_KEY_BYTES = 2048  # a partition key is at most 2048 bytes, a sort key 1024


class NotCanonical(ValueError):
    """The value is not a valid key for the schema; let DynamoDB judge it."""


@dataclass(frozen=True, slots=True)
class KeySchema:
    """A table's primary key: the partition key and, for composite keys, the sort key."""

    hash_name: str
    hash_type: str  # "S", "N" or "B"
    range_name: str | None = None
    range_type: str | None = None

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> KeySchema:
        """From DescribeTable's ``Table``: ``KeySchema`` and ``AttributeDefinitions``."""
        types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
        names = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
        hash_name, range_name = names["HASH"], names.get("RANGE")
        return cls(
            hash_name, types[hash_name], range_name, types[range_name] if range_name else None
        )

    @property
    def names(self) -> tuple[str, ...]:
        return (self.hash_name,) if self.range_name is None else (self.hash_name, self.range_name)


def table_name(value: object) -> str:
    """The table a ``TableName`` names: DynamoDB accepts a table ARN there too."""
    if not isinstance(value, str) or not value:
        raise NotCanonical("TableName")
    if value.startswith("arn:"):
        _, _, resource = value.partition(":table/")
        if not resource or "/" in resource:
            raise NotCanonical("TableName")
        return resource
    return value


def canonical_number(text: str) -> str:
    """The one spelling of a DynamoDB number: no exponent games, no trailing zeros, no -0."""
    # A plain integer (ASCII digits, no leading or trailing zero, at most 38 digits) is its
    # own canonical spelling: 8 times cheaper than the Decimal below, which agrees
    # (tests/unit/test_keys.py compares the two).
    digits = text[1:] if text[:1] == "-" else text
    if (
        0 < len(digits) <= 38
        and digits.isascii()
        and digits.isdigit()
        and digits[0] != "0"
        and digits[-1] != "0"
    ):
        return text
    return _canonical_decimal(text)


def _canonical_decimal(text: str) -> str:
    if not _NUMBER.match(text):
        raise NotCanonical(f"not a DynamoDB number: {text!r}")
    try:
        number = _NUMBERS.create_decimal(text)
    except decimal.DecimalException:
        raise NotCanonical(f"not a DynamoDB number: {text!r}") from None
    if number.is_zero():
        return "0"
    return str(_NUMBERS.normalize(number))


def _canonical_value(value: object, expected_type: str) -> str | bytes:
    if not isinstance(value, dict) or len(value) != 1:
        raise NotCanonical("a key attribute must be one typed value")
    raw = value.get(expected_type)  # None when its one type is another
    if not isinstance(raw, str) or not raw:
        raise NotCanonical("a key attribute's type or value does not fit the schema")
    if expected_type == "S":
        return raw
    if expected_type == "N":
        return canonical_number(raw)
    try:
        decoded = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise NotCanonical("binary key attribute is not base64") from None
    if not decoded:
        raise NotCanonical("binary key attribute is empty")
    return decoded


ItemKey = tuple[str, str | bytes, str | bytes | None]


def item_key(table: str, key: object, schema: KeySchema) -> ItemKey:
    """The cache key for a request's ``Key``: exactly the schema's attributes."""
    if not isinstance(key, dict) or len(key) != (1 if schema.range_name is None else 2):
        raise NotCanonical("Key must hold exactly the table's key attributes")
    return key_of_item(table, key, schema)


def key_of_item(table: str, item: Mapping[str, Any], schema: KeySchema) -> ItemKey:
    """The cache key of an item (PutItem's ``Item``): attributes beyond the key are ignored."""
    try:
        hash_value = _canonical_value(item[schema.hash_name], schema.hash_type)
        range_value = (
            None
            if schema.range_name is None
            else _canonical_value(item[schema.range_name], schema.range_type or "")
        )
    except KeyError:
        raise NotCanonical("a key attribute is missing") from None
    size = len(hash_value) + (len(range_value) if range_value is not None else 0)
    if size > _MAX_KEY_BYTES:
        raise NotCanonical("key is longer than DynamoDB allows")
    return (table, hash_value, range_value)
