"""BatchGetItem as the real Python client sends and reads it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from daxproxy.core.keys import KeySchema
from daxproxy.dax import batches, calls, methods
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Session
from tests.unit.dax.real_client import drive

SCHEMAS = {"H": KeySchema("id", "S"), "R": KeySchema("pk", "S", "sk", "N")}


def test_batch_get_both_ways_with_capacity_after_the_pair() -> None:
    lists = AttributeLists()
    answer = {
        "Responses": {
            "H": [{"id": {"S": "a"}, "v": {"N": "1"}}],
            "R": [{"n": {"S": "x"}}],
        },
        "UnprocessedKeys": {"H": {"Keys": [{"id": {"S": "b"}}]}},
        "ConsumedCapacity": [{"TableName": "H", "CapacityUnits": 1.0}],
    }
    paths: batches.Paths = {"H": None, "R": [("n",)]}
    reply = batches.batch_get_reply(answer, SCHEMAS, lists, paths)
    replies = (
        calls.key_schema_reply(SCHEMAS["H"])
        + calls.key_schema_reply(SCHEMAS["R"])
        + reply
        + calls.attribute_list_reply(lists.id_of(("v",)), lists)
    )
    request = {
        "H": {"Keys": [{"id": {"S": "a"}}, {"id": {"S": "b"}}], "ConsistentRead": True},
        "R": {"Keys": [{"pk": {"S": "u"}, "sk": {"N": "-1"}}], "ProjectionExpression": "n"},
    }
    result, sent = drive(
        lambda c: c.batch_get_item(RequestItems=request, ReturnConsumedCapacity="TOTAL"),
        replies,
    )
    assert result == {
        "Responses": answer["Responses"],
        "UnprocessedKeys": {"H": {"Keys": [{"id": {"S": "b"}}], "ConsistentRead": True}},
        # The client fills in zero for a table with no capacity reported.
        "ConsumedCapacity": [
            {"TableName": "H", "CapacityUnits": 1.0},
            {"TableName": "R", "CapacityUnits": 0.0},
        ],
    }
    [batch] = [r for r in Session(1 << 20).receive(sent) if r.method == methods.BATCH_GET_ITEM]
    assert batches.tables_of(batch.args) == ["H", "R"]
    payload, got_paths = batches.batch_get_payload(batch.args, SCHEMAS)
    assert payload == {
        "RequestItems": {
            "H": {"Keys": request["H"]["Keys"], "ConsistentRead": True},
            "R": {
                "Keys": request["R"]["Keys"],
                "ProjectionExpression": "#n0",
                "ExpressionAttributeNames": {"#n0": "n"},
            },
        },
        "ReturnConsumedCapacity": "TOTAL",
    }
    assert got_paths == paths


@pytest.mark.parametrize(
    "args",
    [
        ({}, None),
        ([], None),
        ({b"H": [False, None, []]}, None),
        ({"H": [False, None]}, None),
        ({"H": [False, None, b"keys"]}, None),
        ({"H": [False, None, [5]]}, None),
    ],
)
def test_requests_no_client_sends(args: tuple[Any, ...]) -> None:
    with pytest.raises(calls.CallError):
        batches.tables_of(args)
        batches.batch_get_payload(args, SCHEMAS)


def test_batch_write_both_ways_and_unprocessed_puts_keep_their_key() -> None:
    lists = AttributeLists()
    put = {"pk": {"S": "u"}, "sk": {"N": "1.5"}, "a": {"L": [{"S": "x"}]}}
    answer = {
        "UnprocessedItems": {
            "R": [
                {"PutRequest": {"Item": put}},
                {"DeleteRequest": {"Key": {"pk": {"S": "d"}, "sk": {"N": "0"}}}},
            ]
        },
        "ItemCollectionMetrics": {
            "R": [{"ItemCollectionKey": {"pk": {"S": "u"}}, "SizeEstimateRangeGB": [0.0, 1.0]}]
        },
    }
    reply = batches.batch_write_reply(answer, SCHEMAS, lists)
    full_list = lists.id_of(("a", "pk", "sk"))
    replies = (
        calls.key_schema_reply(SCHEMAS["H"])
        + calls.key_schema_reply(SCHEMAS["R"])
        + calls.attribute_list_id_reply(["v"], lists)  # the put to H
        + calls.attribute_list_id_reply(["a"], lists)  # the put to R
        + reply
        + calls.attribute_list_reply(full_list, lists)
    )
    request = {
        "H": [
            {"PutRequest": {"Item": {"id": {"S": "h"}, "v": {"N": "1"}}}},
            {"DeleteRequest": {"Key": {"id": {"S": "gone"}}}},
        ],
        "R": [
            {"PutRequest": {"Item": put}},
            {"DeleteRequest": {"Key": {"pk": {"S": "d"}, "sk": {"N": "0"}}}},
        ],
    }
    expected = copy.deepcopy(request)  # the client writes its own notes into the request
    result, sent = drive(
        lambda c: c.batch_write_item(RequestItems=request, ReturnItemCollectionMetrics="SIZE"),
        replies,
    )
    assert result == {
        "UnprocessedItems": answer["UnprocessedItems"],
        "ItemCollectionMetrics": answer["ItemCollectionMetrics"],
    }
    [batch] = [r for r in Session(1 << 20).receive(sent) if r.method == methods.BATCH_WRITE_ITEM]
    payload = batches.batch_write_payload(batch.args, SCHEMAS, lists)
    assert payload == {
        "RequestItems": expected,
        "ReturnItemCollectionMetrics": "SIZE",
        "ReturnConsumedCapacity": "NONE",
    }


@pytest.mark.parametrize(
    "writes",
    [[], [b"h"], "pairs", [b"h", b"\x63"]],  # none, no values slot, not an array, a bad id
)
def test_batch_writes_no_client_sends(writes: Any) -> None:
    with pytest.raises(calls.CallError):
        batches.batch_write_payload(({"H": writes}, None), SCHEMAS, AttributeLists())
