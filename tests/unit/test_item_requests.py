"""What the item cache reads from requests and writes into answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daxproxy.core.item_requests import (
    After,
    Uncacheable,
    batch_get_body,
    batch_get_reads,
    consumed_capacity,
    get_item_body,
    get_item_read,
    written_items,
)

KEY = {"pk": {"S": "a"}}


def test_a_plain_get_item_is_cacheable() -> None:
    read = get_item_read({"TableName": "t", "Key": KEY, "ReturnConsumedCapacity": "TOTAL"})
    assert (read.table, read.projection, read.consistent) == ("t", None, False)
    assert get_item_read({"TableName": "t", "Key": KEY, "ConsistentRead": True}).consistent


@pytest.mark.parametrize(
    "payload",
    [
        {"TableName": "t"},  # no key
        {"TableName": "t", "Key": "a"},
        {"TableName": "", "Key": KEY},
        {"TableName": 5, "Key": KEY},
        {"TableName": "t", "Key": KEY, "ConsistentRead": "yes"},
        {"TableName": "t", "Key": KEY, "ReturnConsumedCapacity": "ALL"},
        {"TableName": "t", "Key": KEY, "ExpressionAttributeValues": {":v": {"S": "x"}}},
        {"TableName": "t", "Key": KEY, "SomethingNew": 1},
        {"TableName": "t", "Key": KEY, "ExpressionAttributeNames": {"#a": "a"}},
        {"TableName": "t", "Key": KEY, "AttributesToGet": []},
    ],
)
def test_get_items_dynamodb_would_judge_are_uncacheable(payload: dict[str, Any]) -> None:
    with pytest.raises(Uncacheable):
        get_item_read(payload)


def test_batch_get_reads() -> None:
    reads = batch_get_reads(
        {
            "RequestItems": {
                "a": {"Keys": [KEY, {"pk": {"S": "b"}}]},
                "b": {"Keys": [KEY], "ConsistentRead": True},
            },
            "ReturnConsumedCapacity": "INDEXES",
        }
    )
    assert [(t, r.consistent, len(k)) for t, (r, k) in reads.items()] == [
        ("a", False, 2),
        ("b", True, 1),
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"RequestItems": {}},
        {"RequestItems": {"t": {"Keys": []}}},
        {"RequestItems": {"t": {"Keys": [KEY], "Extra": 1}}},
        {"RequestItems": {"t": {"Keys": ["a"]}}},
        {"RequestItems": {"t": {"Keys": [KEY] * 101}}},
        {"RequestItems": {"t": {"Keys": [KEY]}}, "ReturnItemCollectionMetrics": "SIZE"},
    ],
)
def test_batch_gets_dynamodb_would_judge_are_uncacheable(payload: dict[str, Any]) -> None:
    with pytest.raises(Uncacheable):
        batch_get_reads(payload)


def test_get_item_bodies() -> None:
    item = b'{"pk":{"S":"a"}}'
    assert get_item_body(item, None) == b'{"Item":{"pk":{"S":"a"}}}'
    assert get_item_body(None, None) == b"{}"
    capacity = consumed_capacity("t", "INDEXES")
    assert orjson.loads(get_item_body(item, capacity)) == {
        "Item": {"pk": {"S": "a"}},
        "ConsumedCapacity": {
            "TableName": "t",
            "CapacityUnits": 0.0,
            "Table": {"CapacityUnits": 0.0},
        },
    }
    assert orjson.loads(get_item_body(None, consumed_capacity("t", "TOTAL"))) == {
        "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.0}
    }
    assert consumed_capacity("t", "NONE") is None


def test_batch_get_body() -> None:
    body = batch_get_body(
        {"a": [b'{"pk":{"S":"1"}}', b'{"pk":{"S":"2"}}'], "b": []},
        {"c": {"Keys": [KEY], "ConsistentRead": True}},
        [{"TableName": "a", "CapacityUnits": 0.0}],
    )
    assert orjson.loads(body) == {
        "Responses": {"a": [{"pk": {"S": "1"}}, {"pk": {"S": "2"}}], "b": []},
        "UnprocessedKeys": {"c": {"Keys": [KEY], "ConsistentRead": True}},
        "ConsumedCapacity": [{"TableName": "a", "CapacityUnits": 0.0}],
    }


def test_written_items_of_each_write() -> None:
    item = {"pk": {"S": "a"}, "v": {"N": "1"}}
    put = list(written_items("PutItem", {"TableName": "t", "Item": item}))
    assert [(w.table, w.is_item, w.after, w.item) for w in put] == [("t", True, After.STORE, item)]
    delete = list(written_items("DeleteItem", {"TableName": "t", "Key": KEY}))
    assert [(w.key, w.after) for w in delete] == [(KEY, After.ABSENT)]
    update = list(written_items("UpdateItem", {"TableName": "t", "Key": KEY}))
    assert [w.after for w in update] == [After.EVICT]
    batch = list(
        written_items(
            "BatchWriteItem",
            {
                "RequestItems": {
                    "t": [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": KEY}}],
                    "u": [{"PutRequest": {"Item": item}}],
                }
            },
        )
    )
    assert [(w.table, w.after) for w in batch] == [
        ("t", After.STORE),
        ("t", After.ABSENT),
        ("u", After.STORE),
    ]
    transaction = list(
        written_items(
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "t", "Item": item}},
                    {"Update": {"TableName": "t", "Key": KEY}},
                    {"Delete": {"TableName": "u", "Key": KEY}},
                    {"ConditionCheck": {"TableName": "t", "Key": KEY}},
                ]
            },
        )
    )
    assert [(w.table, w.is_item, w.after) for w in transaction] == [
        ("t", True, After.EVICT),
        ("t", False, After.EVICT),
        ("u", False, After.EVICT),
    ]


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        ("PutItem", {"TableName": "t"}),
        ("DeleteItem", {"TableName": "t", "Key": []}),
        ("BatchWriteItem", {"RequestItems": {"t": [{"Neither": {}}]}}),
        ("BatchWriteItem", {"RequestItems": {"t": "x"}}),
        ("TransactWriteItems", {"TransactItems": [{"Bogus": {}}]}),
        ("TransactWriteItems", {}),
        ("GetItem", {"TableName": "t", "Key": KEY}),
    ],
)
def test_writes_whose_keys_cannot_be_read(operation: str, payload: dict[str, Any]) -> None:
    with pytest.raises(Uncacheable):
        list(written_items(operation, payload))


@pytest.mark.parametrize("returns", [[], [""], {}, {"a": 1}, 0, 1, False, True])
def test_an_update_whose_return_values_is_not_a_name_is_uncacheable(returns: Any) -> None:
    # Found by the fuzz test: the item writer looked an unhashable ReturnValues up in a set.
    payload = {"TableName": "t", "Key": {"pk": {"S": "1"}}, "ReturnValues": returns}
    with pytest.raises(Uncacheable):
        list(written_items("UpdateItem", payload))
