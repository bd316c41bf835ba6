"""BatchGetItem as the real Python client sends and reads it."""

from __future__ import annotations

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
