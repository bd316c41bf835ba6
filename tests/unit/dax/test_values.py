"""Attribute values, keys and values payloads: byte examples, and the client's own encoder."""

from __future__ import annotations

import base64
from typing import Any

import cbor2
import pytest
from amazondax import AttributeValueEncoder as client_encoder

from daxproxy.core.keys import KeySchema
from daxproxy.dax import cbor, values

# (DynamoDB JSON, CBOR bytes), verified with the client (the protocol study, section 3).
EXAMPLES: list[tuple[dict[str, Any], str]] = [
    ({"S": "hi"}, "626869"),
    ({"N": "42"}, "182a"),
    ({"N": "-1"}, "20"),
    ({"N": "3.14"}, "c4822119013a"),
    ({"N": "1E+3"}, "c4820301"),
    ({"B": base64.b64encode(b"\x01\x02").decode()}, "420102"),
    ({"BOOL": True}, "f5"),
    ({"BOOL": False}, "f4"),
    ({"NULL": True}, "f6"),
    ({"SS": ["a", "b"]}, "d90cf98261616162"),
    ({"L": [{"S": "a"}, {"N": "1"}]}, "82616101"),
    ({"M": {"a": {"N": "1"}, "b": {"S": "x"}}}, "a261610161626178"),
]


@pytest.mark.parametrize(("av", "hex_bytes"), EXAMPLES)
def test_examples_both_ways(av: dict[str, Any], hex_bytes: str) -> None:
    assert cbor.dumps(values.to_cbor(av)).hex() == hex_bytes
    assert values.from_cbor(cbor.loads(bytes.fromhex(hex_bytes))) == av


def _client_av(av: Any) -> Any:
    """botocore's form of a value (binary as bytes), which the client's encoder takes."""
    ((kind, inner),) = av.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if kind == "L":
        return {"L": [_client_av(v) for v in inner]}
    if kind == "M":
        return {"M": {k: _client_av(v) for k, v in inner.items()}}
    return av


NESTED = {
    "M": {
        "ns": {"NS": ["1", "-2.5", "1E+40", "12345678901234567890123456789012345678"]},
        "bs": {"BS": [base64.b64encode(b"\x00\xff").decode()]},
        "l": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {}}, {"L": []}, {"S": ""}]},
        "deep": {"M": {"x": {"M": {"y": {"N": "-0.000001"}}}}},
        "big": {"N": "-99999999999999999999999999999999999999"},
    }
}


def test_the_same_bytes_as_the_client_and_back() -> None:
    ours = cbor.dumps(values.to_cbor(NESTED))
    assert ours == client_encoder.encode_attribute_value(_client_av(NESTED))
    assert values.from_cbor(cbor.loads(ours)) == NESTED


def test_numbers_the_js_client_sends_as_floats() -> None:
    # The JS client sends N "3.14" as a float64.
    assert values.from_cbor(cbor.loads(bytes.fromhex("fb40091eb851eb851f"))) == {"N": "3.14"}
    with pytest.raises(values.BadValue):
        values.from_cbor(float("inf"))


@pytest.mark.parametrize(
    "item",
    [
        {1: "a"},  # a map name that is not text
        cbor.loads(bytes.fromhex("d90cf901")),  # a set that is not an array
        cbor.loads(bytes.fromhex("d90cf98101")),  # a string set holding a number
        cbor.loads(bytes.fromhex("c11a00000001")),  # an epoch time (tag 1)
        cbor.loads(bytes.fromhex("f97e00")),  # NaN
    ],
)
def test_what_no_client_sends_is_a_bad_value(item: Any) -> None:
    with pytest.raises(values.BadValue):
        values.from_cbor(item)


HASH_S = KeySchema("id", "S")
HASH_N = KeySchema("id", "N")
HASH_B = KeySchema("id", "B")
S_N = KeySchema("pk", "S", "sk", "N")
S_S = KeySchema("pk", "S", "sk", "S")
N_B = KeySchema("pk", "N", "sk", "B")
B_S = KeySchema("pk", "B", "sk", "S")

KEYS: list[tuple[KeySchema, dict[str, Any], str]] = [
    (HASH_S, {"id": {"S": "abc"}}, "616263"),
    (HASH_N, {"id": {"N": "7"}}, "07"),
    (HASH_N, {"id": {"N": "-2.5"}}, "c482203818"),
    (HASH_B, {"id": {"B": base64.b64encode(b"\xff\x00").decode()}}, "ff00"),
    (S_N, {"pk": {"S": "u1"}, "sk": {"N": "5"}}, "627531c1800000"),
    (S_N, {"pk": {"S": "u1"}, "sk": {"N": "-0.5"}}, "6275313f7ffff0"),
    (S_S, {"pk": {"S": "u1"}, "sk": {"S": "ab"}}, "6275316162"),
    (N_B, {"pk": {"N": "7"}, "sk": {"B": base64.b64encode(b"\xff").decode()}}, "07ff"),
    (B_S, {"pk": {"B": base64.b64encode(b"\x01").decode()}, "sk": {"S": ""}}, "4101"),
]


def _client_schema(schema: KeySchema) -> list[dict[str, str]]:
    return [
        {"AttributeName": name, "AttributeType": kind}
        for name, kind in (
            (schema.hash_name, schema.hash_type),
            (schema.range_name, schema.range_type),
        )
        if name is not None
    ]


@pytest.mark.parametrize(("schema", "key", "hex_bytes"), KEYS)
def test_keys_both_ways(schema: KeySchema, key: dict[str, Any], hex_bytes: str) -> None:
    encoded = values.encode_key(key, schema)
    assert encoded.hex() == hex_bytes
    if key.get("sk") != {"S": ""}:  # the client refuses an empty sort key
        client_key = {name: _client_av(av) for name, av in key.items()}
        assert encoded == client_encoder.encode_key(client_key, _client_schema(schema))
    assert values.decode_key(encoded, schema) == key


def test_a_key_ignores_the_other_attributes_of_an_item() -> None:
    item = {"pk": {"S": "u1"}, "sk": {"N": "5"}, "x": {"S": "y"}}
    assert values.encode_key(item, S_N).hex() == "627531c1800000"


@pytest.mark.parametrize(
    ("schema", "hex_bytes"),
    [
        (HASH_S, "ff"),  # not UTF-8
        (HASH_N, "61"),  # a number key that is text
        (HASH_N, "0101"),  # two items where one is expected
        (S_N, "01c1800000"),  # the partition key is a number, not text
        (S_N, "627531c1"),  # a sort key cut short
        (S_N, "6275"),  # a partition key cut short
    ],
)
def test_malformed_keys_are_bad_values(schema: KeySchema, hex_bytes: str) -> None:
    with pytest.raises(values.BadValue):
        values.decode_key(bytes.fromhex(hex_bytes), schema)


@pytest.mark.parametrize(
    "value",
    [10**5000, -(10**5000), 2**421, cbor2.CBORTag(3322, [10**5000]), {"a": 10**5000}],
    ids=["bignum", "negative", "past 2**420", "in a set", "in a map"],
)
def test_a_number_past_dynamodbs_range_is_a_bad_value(value: Any) -> None:
    """Found by the fuzz: a bignum of more than 4300 digits made Python's ``str`` raise
    ValueError, an InternalServerError."""
    with pytest.raises(values.BadValue, match="past DynamoDB's range"):
        values.from_cbor(value)


def test_the_largest_numbers_dynamodb_takes_are_numbers() -> None:
    largest = 10**126 - 1  # DynamoDB: magnitudes below 1E+126
    assert values.from_cbor(largest) == {"N": str(largest)}
    assert values.from_cbor(-largest) == {"N": str(-largest)}


def test_a_key_missing_an_attribute_is_a_bad_value() -> None:
    with pytest.raises(values.BadValue):
        values.encode_key({"pk": {"S": "u1"}}, S_N)


def test_values_payload() -> None:
    item = {"pk": {"S": "u1"}, "sk": {"N": "5"}, "name": {"S": "hello"}, "age": {"N": "42"}}
    names = values.attribute_names(item, S_N)
    assert names == ("age", "name")
    payload = values.encode_values(item, names, 7)
    assert payload.hex() == "07182a6568656c6c6f"  # the protocol study's example
    client_item = {k: _client_av(v) for k, v in item.items()}
    assert payload == client_encoder.encode_values(client_item, _client_schema(S_N), None, 7)
    list_id, raw = values.values_list_id(payload)
    assert list_id == 7
    assert values.decode_values(raw, names) == {"age": {"N": "42"}, "name": {"S": "hello"}}


@pytest.mark.parametrize("hex_bytes", ["", "61", "07ff", "f5"])
def test_malformed_values_payloads(hex_bytes: str) -> None:
    with pytest.raises(values.BadValue):
        values.values_list_id(bytes.fromhex(hex_bytes))


def test_a_values_payload_must_fill_its_list() -> None:
    with pytest.raises(values.BadValue):
        values.decode_values([1], ("a", "b"))
