"""The query cache's key: requests that must share an entry, and requests that must not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daxproxy.core.item_requests import Uncacheable
from daxproxy.core.query_requests import query_key, zero_capacity

BASE: dict[str, Any] = {
    "TableName": "t",
    "KeyConditionExpression": "pk = :p AND sk > :s",
    "ExpressionAttributeValues": {":p": {"S": "a"}, ":s": {"N": "1"}},
}


def key(**changes: Any) -> bytes:
    return query_key("Query", {**BASE, **changes})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # JSON key order
        (BASE, dict(reversed(list(BASE.items())))),
        # how a number is written
        ({**BASE}, {**BASE, "ExpressionAttributeValues": {":p": {"S": "a"}, ":s": {"N": "1.0"}}}),
        ({**BASE}, {**BASE, "ExpressionAttributeValues": {":s": {"N": "10E-1"}, ":p": {"S": "a"}}}),
        # defaults spelled out
        ({**BASE}, {**BASE, "ConsistentRead": False}),
        ({**BASE}, {**BASE, "ScanIndexForward": True}),
        # a table's ARN and its name
        ({**BASE}, {**BASE, "TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/t"}),
        # the members of a set, in any order
        (
            {
                **BASE,
                "ExpressionAttributeValues": {":p": {"SS": ["x", "y"]}, ":s": {"NS": ["1", "2"]}},
            },
            {
                **BASE,
                "ExpressionAttributeValues": {":p": {"SS": ["y", "x"]}, ":s": {"NS": ["2.0", "1"]}},
            },
        ),
        # numbers inside a start key and inside nested values
        (
            {**BASE, "ExclusiveStartKey": {"pk": {"S": "a"}, "sk": {"N": "5"}}},
            {**BASE, "ExclusiveStartKey": {"sk": {"N": "5.00"}, "pk": {"S": "a"}}},
        ),
        (
            {**BASE, "ExpressionAttributeValues": {":p": {"M": {"n": {"L": [{"N": "1"}]}}}}},
            {**BASE, "ExpressionAttributeValues": {":p": {"M": {"n": {"L": [{"N": "1.0"}]}}}}},
        ),
        # binary, however padded the base64 is spelled the same
        (
            {**BASE, "ExpressionAttributeValues": {":p": {"B": "AAE="}}},
            {**BASE, "ExpressionAttributeValues": {":p": {"B": "AAE="}}},
        ),
    ],
)
def test_requests_that_share_an_entry(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert query_key("Query", a) == query_key("Query", b)


@pytest.mark.parametrize(
    "change",
    [
        {"TableName": "u"},
        {"IndexName": "by-colour"},
        {"KeyConditionExpression": "pk = :p AND sk >= :s"},
        {"ExpressionAttributeValues": {":p": {"S": "a"}, ":s": {"N": "2"}}},
        {"ExpressionAttributeValues": {":p": {"S": "a"}, ":s": {"S": "1"}}},
        {"FilterExpression": "attribute_exists(v)"},
        {"ProjectionExpression": "pk"},
        {"ExpressionAttributeNames": {"#v": "v"}},
        {"Select": "COUNT"},
        {"Limit": 1},
        {"Limit": 2},
        {"ExclusiveStartKey": {"pk": {"S": "a"}, "sk": {"N": "5"}}},
        {"ScanIndexForward": False},
        {"ReturnConsumedCapacity": "TOTAL"},
        {"ReturnConsumedCapacity": "INDEXES"},
    ],
)
def test_requests_that_must_not_share_an_entry(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_query_and_scan_never_share() -> None:
    scan = {"TableName": "t"}
    assert query_key("Scan", scan) != query_key("Query", scan)
    assert query_key("Scan", {**scan, "Segment": 0, "TotalSegments": 2}) != query_key(
        "Scan", {**scan, "Segment": 1, "TotalSegments": 2}
    )


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        ("Query", {**BASE, "ConsistentRead": True}),
        ("Query", {**BASE, "Segment": 0}),  # a Scan member
        ("Scan", {"TableName": "t", "ScanIndexForward": True}),  # a Query member
        ("Query", {**BASE, "SomethingNew": 1}),
        ("Query", {**BASE, "ExpressionAttributeValues": {":p": {"N": "one"}}}),
        ("Query", {**BASE, "ExpressionAttributeValues": {":p": {"X": "a"}}}),
        ("Query", {**BASE, "ExpressionAttributeValues": {":p": {"B": "not base64!"}}}),
        ("Query", {**BASE, "ExpressionAttributeValues": {":p": {"S": "a", "N": "1"}}}),
        ("Query", {**BASE, "ReturnConsumedCapacity": "ALL"}),
        ("Query", {**BASE, "TableName": ""}),
        ("GetItem", {"TableName": "t"}),
    ],
)
def test_uncacheable(operation: str, payload: dict[str, Any]) -> None:
    with pytest.raises(Uncacheable):
        query_key(operation, payload)


def test_zero_capacity_keeps_the_shape() -> None:
    consumed = {
        "TableName": "t",
        "CapacityUnits": 2.5,
        "ReadCapacityUnits": 2.5,
        "Table": {"CapacityUnits": 1.0},
        "GlobalSecondaryIndexes": {"g": {"CapacityUnits": 1.5}},
    }
    assert zero_capacity(consumed) == {
        "TableName": "t",
        "CapacityUnits": 0.0,
        "ReadCapacityUnits": 0.0,
        "Table": {"CapacityUnits": 0.0},
        "GlobalSecondaryIndexes": {"g": {"CapacityUnits": 0.0}},
    }


def test_a_value_nested_past_pythons_recursion_limit_is_uncacheable() -> None:
    # DynamoDB nests 32 levels at most and judges deeper values itself; found by the fuzz test.
    deep = orjson.loads('{"L":[' * 500 + '{"S":"x"}' + "]}" * 500)
    with pytest.raises(Uncacheable):
        query_key("Query", {"TableName": "t", "ExpressionAttributeValues": {":v": deep}})


def values(**named: Any) -> dict[str, Any]:
    return {**BASE, "ExpressionAttributeValues": {f":{n}": v for n, v in named.items()}}


@pytest.mark.parametrize(
    "value",
    [
        {"SS": ["x", "x"]},
        {"SS": ["x", "y", "x"]},
        {"NS": ["1", "1.0"]},
        {"NS": ["1", "10E-1", "2"]},
        {"NS": ["0", "-0.0"]},
        {"BS": ["AAE=", "AAE="]},
        {"BS": ["AAE=", "AAF="]},  # the same bytes: base64's unused low bits differ
        {"SS": []},
        {"NS": []},
        {"BS": []},
    ],
)
@pytest.mark.parametrize(
    "where",
    [
        lambda v: values(p={"S": "a"}, s=v),
        lambda v: values(p={"M": {"deep": {"L": [v]}}}),
        lambda v: {**BASE, "ExclusiveStartKey": {"pk": {"S": "a"}, "sk": v}},
        lambda v: {
            "TableName": "t",
            "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [v]}},
        },
        lambda v: {
            **BASE,
            "QueryFilter": {"v": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [v]}},
        },
    ],
    ids=["values", "nested", "start-key", "key-conditions", "query-filter"],
)
def test_a_set_dynamodb_refuses_is_never_a_key(value: dict[str, Any], where: Any) -> None:
    # DynamoDB answers ValidationException ("Input collection contains duplicates"); were
    # duplicates dropped from the key, the page of the valid set would answer it.
    with pytest.raises(Uncacheable):
        query_key("Query", where(value))


def test_a_set_dynamodb_refuses_in_a_scan_filter_is_never_a_key() -> None:
    condition = {"ComparisonOperator": "IN", "AttributeValueList": [{"NS": ["1", "1.00"]}]}
    with pytest.raises(Uncacheable):
        query_key("Scan", {"TableName": "t", "ScanFilter": {"v": condition}})


@pytest.mark.parametrize(
    "value",
    [{"SS": ["x", "X"]}, {"SS": ["x", "x "]}, {"NS": ["1", "1.1"]}, {"BS": ["AAE=", "AAI="]}],
)
def test_distinct_members_stay_cacheable(value: dict[str, Any]) -> None:
    ((kind, members),) = value.items()
    both = query_key("Query", values(s=value))
    assert both == query_key("Query", values(s={kind: list(reversed(members))}))
    assert both != query_key("Query", values(s={kind: members[:1]}))
