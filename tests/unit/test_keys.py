"""Canonical keys: every spelling of one DynamoDB key is one cache key, and nothing else is."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daxproxy.core import keys
from daxproxy.core.keys import KeySchema, NotCanonical, canonical_number, item_key, key_of_item

COMPOSITE = KeySchema("pk", "S", "sk", "N")
BINARY = KeySchema("id", "B")


@pytest.mark.parametrize(
    "spellings",
    [
        ["1", "1.0", "10E-1", "1.000", "0.1e1", "1e0"],
        ["100", "1E2", "1e+2", "100.00", "0.001E5"],
        ["0", "0.0", "-0", "0e10", "-0.000"],
        ["-1.5", "-1.50", "-15E-1"],
        [".5", "0.5", "5e-1", "5.E-1"],
        ["1E-130", "0.1E-129"],
        ["9" * 38, "9" * 38 + ".0"],
    ],
)
def test_numbers_that_are_equal_share_one_spelling(spellings: list[str]) -> None:
    assert len({canonical_number(s) for s in spellings}) == 1


@pytest.mark.parametrize(
    ("a", "b"), [("1", "-1"), ("1", "10"), ("0.1", "0.01"), ("1E125", "1E124"), ("12", "21")]
)
def test_numbers_that_differ_stay_apart(a: str, b: str) -> None:
    assert canonical_number(a) != canonical_number(b)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "+1",
        "1_000",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "1e",
        "e1",
        "--1",
        "1.2.3",
        "9" * 39,
        "1E126",
        "1E-131",
        "\u0661",  # an Arabic-Indic digit one: a digit to Python, not to DynamoDB
    ],
)
def test_numbers_dynamodb_would_judge_are_not_canonical(text: str) -> None:
    with pytest.raises(NotCanonical):
        canonical_number(text)


def key(pk: Any, sk: Any) -> dict[str, Any]:
    return {"pk": pk, "sk": sk}


def test_composite_keys() -> None:
    a = item_key("t", key({"S": "x"}, {"N": "1.0"}), COMPOSITE)
    b = item_key("t", key({"S": "x"}, {"N": "1"}), COMPOSITE)
    assert a == b == ("t", "x", "1")
    assert item_key("u", key({"S": "x"}, {"N": "1"}), COMPOSITE) != a
    assert item_key("t", key({"S": "X"}, {"N": "1"}), COMPOSITE) != a


def test_binary_keys_compare_by_bytes() -> None:
    raw = b"\x00\x01\xfe"
    assert item_key("t", {"id": {"B": base64.b64encode(raw).decode()}}, BINARY) == ("t", raw, None)


@pytest.mark.parametrize(
    "bad",
    [
        {"pk": {"S": "x"}},  # the sort key is missing
        {"pk": {"S": "x"}, "sk": {"N": "1"}, "other": {"S": "y"}},  # an extra attribute
        {"pk": {"N": "1"}, "sk": {"N": "1"}},  # the wrong type
        {"pk": {"S": ""}, "sk": {"N": "1"}},  # an empty string
        {"pk": {"S": "x", "N": "1"}, "sk": {"N": "1"}},  # two types
        {"pk": "x", "sk": {"N": "1"}},  # not a typed value
        {"pk": {"S": "x"}, "sk": {"N": "one"}},
        {"pk": {"S": "x" * 2049}, "sk": {"N": "1"}},
        [],
    ],
)
def test_keys_dynamodb_would_reject_are_not_canonical(bad: Any) -> None:
    with pytest.raises(NotCanonical):
        item_key("t", bad, COMPOSITE)


@pytest.mark.parametrize("bad", [{"id": {"B": "not base64!"}}, {"id": {"B": ""}}])
def test_bad_binary_keys(bad: Any) -> None:
    with pytest.raises(NotCanonical):
        item_key("t", bad, BINARY)


def test_the_key_of_an_item_ignores_its_other_attributes() -> None:
    item = {"pk": {"S": "x"}, "sk": {"N": "2.0"}, "v": {"S": "anything"}}
    assert key_of_item("t", item, COMPOSITE) == ("t", "x", "2")
    with pytest.raises(NotCanonical):
        key_of_item("t", {"pk": {"S": "x"}}, COMPOSITE)


def test_schema_from_describe_table() -> None:
    table = {
        "KeySchema": [
            {"AttributeName": "sk", "KeyType": "RANGE"},
            {"AttributeName": "pk", "KeyType": "HASH"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "gsi", "AttributeType": "B"},
        ],
    }
    assert KeySchema.from_description(table) == COMPOSITE
    assert COMPOSITE.names == ("pk", "sk")


# The plain-integer fast path of canonical_number must give what the Decimal path gives.
_INTEGERS = [
    *(str(n) for n in range(-1200, 1200)),
    "7" * 38,
    "-" + "7" * 38,
    "9" * 39,  # past 38 digits: DynamoDB's to judge, by the Decimal path
    "1" + "0" * 37,
    "12345678901234567890123456789012345671",
    "007",
    "-007",
    "-0",
    "00",
    "10",
    "-10",
    "1200",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: str.isdigit() says yes, DynamoDB no
    "²",
    "-",
    "--1",
    "+1",
]


def _spelling(canonical: Callable[[str], str], text: str) -> str | None:
    """The canonical spelling of ``text``; None where it is not canonical."""
    try:
        return canonical(text)
    except NotCanonical:
        return None


@pytest.mark.parametrize("text", _INTEGERS)
def test_the_integer_fast_path_agrees_with_the_decimal_path(text: str) -> None:
    assert _spelling(canonical_number, text) == _spelling(keys._canonical_decimal, text)


@given(st.integers(min_value=-(10**40), max_value=10**40))
def test_every_integer_takes_the_spelling_the_decimal_path_gives(number: int) -> None:
    text = str(number)
    assert _spelling(canonical_number, text) == _spelling(keys._canonical_decimal, text)
