"""The AWS SDK for JavaScript v3 gets the same answers through the proxy as straight from moto.

``tests/js/scenario.mjs`` drives one fixed scenario with the SDK's ``DynamoDBClient`` and
``DynamoDBStreamsClient`` (table lifecycle, every item and batch operation, transactions,
PartiQL, a new global secondary index, TTL, tags, the Streams API on the same endpoint, and
four kinds of service error) once against the proxy and once against a second, identical
moto server, with the same table names. Every step's output (or error name, message, status
and modelled fields such as ``CancellationReasons``) must match after :func:`normalize`
blanks what two servers choose for themselves. The SDK sends every request once, so a fault
the proxy introduces is not hidden by a successful retry; and since the SDK parses every
answer itself, this also proves that a real JavaScript client accepts what the proxy relays.
Checks on the outcome make sure the scenario really ran, so the comparison is never between
two identical failures.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.integration.conftest import Endpoints
from tests.integration.harness import normalize, without_unasked_capacity
from tests.integration.node_scripts import node_with, run_scenario

SCENARIO = "scenario.mjs"
SDK_PACKAGES = ("@aws-sdk/client-dynamodb", "@aws-sdk/client-dynamodb-streams")

# Every step of the scenario, in order: a step that went missing fails the test.
EXPECTED_OPS = [
    "CreateTable",
    "CreateTable",
    "WaitForActive",
    "WaitForActive",
    "DescribeTable",
    "ListTables",
    "PutItem",
    "GetItem",
    "GetItem (projection, consistent)",
    "UpdateItem",
    "PutItem (ReturnValues ALL_OLD)",
    "DeleteItem",
    "BatchWriteItem",
    "BatchWriteItem (delete)",
    "BatchGetItem",
    "Query",
    "Query (page 1)",
    "Query (page 2)",
    "Scan",
    "Scan (count)",
    "TransactWriteItems",
    "TransactGetItems",
    "ExecuteStatement (INSERT)",
    "ExecuteStatement (UPDATE)",
    "ExecuteStatement (SELECT)",
    "UpdateTable",
    "WaitForActive",
    "Query (index)",
    "UpdateTimeToLive",
    "DescribeTimeToLive",
    "TagResource",
    "ListTagsOfResource",
    "PutItem (condition fails)",
    "GetItem (missing table)",
    "DescribeTable (missing table)",
    "GetItem (incomplete key)",
    "UpdateItem (bad expression)",
    "TransactWriteItems (cancelled)",
    "ListStreams",
    "DescribeStream",
    "GetShardIterator",
    "GetRecords",
    "DeleteTable",
    "DeleteTable",
]
# The steps that must fail, and the error the SDK must raise for each.
EXPECTED_ERRORS = {
    "PutItem (condition fails)": "ConditionalCheckFailedException",
    "GetItem (missing table)": "ResourceNotFoundException",
    "DescribeTable (missing table)": "ResourceNotFoundException",
    "GetItem (incomplete key)": "ValidationException",
    "UpdateItem (bad expression)": "ValidationException",
    "TransactWriteItems (cancelled)": "TransactionCanceledException",
}

pytestmark = pytest.mark.slow


def _dump(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


def _step(steps: list[dict[str, Any]], op: str) -> dict[str, Any]:
    return next(step for step in steps if step["op"] == op)


def _result(steps: list[dict[str, Any]], op: str) -> Any:
    return _step(steps, op)["result"]


def _check_scenario_ran(steps: list[dict[str, Any]], prefix: str) -> None:
    """The scenario did what it says, so that equal outputs mean something."""
    assert [step["op"] for step in steps] == EXPECTED_OPS
    for step in steps:
        expected_error = EXPECTED_ERRORS.get(step["op"])
        if expected_error is None:
            assert "result" in step, f"{step['op']} failed: {_dump(step)}"
        else:
            assert step.get("error", {}).get("name") == expected_error, _dump(step)
            assert step["error"]["status"] == 400, _dump(step)
    _check_tables(steps, f"{prefix}-main", f"{prefix}-aux")
    _check_items(steps, f"{prefix}-main", f"{prefix}-aux")
    _check_errors(steps)
    _check_stream(steps, f"{prefix}-main")


def _check_tables(steps: list[dict[str, Any]], main: str, aux: str) -> None:
    described = _result(steps, "DescribeTable")["Table"]
    assert described["TableName"] == main
    assert described["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert sorted(_result(steps, "ListTables")["TableNames"]) == sorted([main, aux])
    indexes = _result(steps, "UpdateTable")["TableDescription"]["GlobalSecondaryIndexes"]
    assert [index["IndexName"] for index in indexes] == ["by-name"]
    ttl = _result(steps, "DescribeTimeToLive")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
    tags = _result(steps, "ListTagsOfResource")["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "storage", "env": "test"}
    deleted = [s["result"]["TableDescription"] for s in steps if s["op"] == "DeleteTable"]
    assert [table["TableName"] for table in deleted] == [main, aux]


def _check_items(steps: list[dict[str, Any]], main: str, aux: str) -> None:
    item = _result(steps, "GetItem")["Item"]
    assert item["name"] == {"S": "Ada"}
    assert item["avatar"] == {"B": "AAEC/f7/"}  # bytes 0 1 2 253 254 255, as base64
    assert item["blobs"] == {"BS": ["Bw==", "CAk="]}
    assert _result(steps, "UpdateItem")["Attributes"]["age"] == {"N": "37"}
    assert _result(steps, "DeleteItem")["Attributes"]["name"] == {"S": "Ada, again"}

    batch = _result(steps, "BatchGetItem")["Responses"]
    assert len(batch[main]) == 2
    assert batch[aux] == [{"id": {"S": "a"}}]
    query = _result(steps, "Query")["Items"]
    assert [i["sk"]["N"] for i in query] == ["5", "4", "3"]
    pages = _result(steps, "Query (page 1)")["Items"] + _result(steps, "Query (page 2)")["Items"]
    assert [i["sk"]["N"] for i in pages] == ["2", "3", "4", "5"]
    assert _result(steps, "Scan")["Count"] == 3
    assert [i["sk"] for i in _result(steps, "Query (index)")["Items"]] == [{"N": "1"}]

    transact = _result(steps, "TransactGetItems")["Responses"]
    assert transact[0]["Item"]["value"] == {"S": "from a transaction"}
    assert transact[1]["Item"]["n"] == {"N": "21"}
    assert "Item" not in transact[2]  # deleted in the transaction
    selected = _result(steps, "ExecuteStatement (SELECT)")["Items"]
    assert [i["via"] for i in selected] == [{"S": "partiql-update"}]


def _check_errors(steps: list[dict[str, Any]]) -> None:
    failed_condition = _step(steps, "PutItem (condition fails)")["error"]
    assert failed_condition["Item"]["name"] == {"S": "Ada"}  # ReturnValuesOnConditionCheckFailure
    cancelled = _step(steps, "TransactWriteItems (cancelled)")["error"]
    codes = [reason["Code"] for reason in cancelled["CancellationReasons"]]
    assert codes == ["None", "ConditionalCheckFailed"]


def _check_stream(steps: list[dict[str, Any]], main: str) -> None:
    assert [s["TableName"] for s in _result(steps, "ListStreams")["Streams"]] == [main]
    assert _result(steps, "DescribeStream")["StreamDescription"]["Shards"]
    assert _result(steps, "GetShardIterator")["ShardIterator"]
    records = _result(steps, "GetRecords")["Records"]
    assert records, "GetRecords returned no records"
    assert records[0]["eventName"] == "INSERT"
    assert records[0]["dynamodb"]["NewImage"]["name"] == {"S": "Ada"}
    assert any(
        r["eventName"] == "MODIFY" and {"OldImage", "NewImage"} <= r["dynamodb"].keys()
        for r in records
    )
    assert any(r["eventName"] == "REMOVE" for r in records)


def _comparable(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = normalize(steps)
    for step in out:
        if step["op"] == "BatchGetItem" and "result" in step:  # it asks for no capacity
            step["result"] = without_unasked_capacity(step["result"])
    return out


def test_js_sdk_gets_the_same_answers_through_the_proxy(endpoints: Endpoints) -> None:
    node = node_with(SDK_PACKAGES, "the AWS SDK for JavaScript v3 test")
    prefix = f"js-{uuid.uuid4().hex[:8]}"
    proxied = run_scenario(node, SCENARIO, endpoints.proxy, prefix)
    direct = run_scenario(node, SCENARIO, endpoints.direct, prefix)

    through, straight = _comparable(proxied), _comparable(direct)
    assert [s["op"] for s in through] == [s["op"] for s in straight]
    for via_proxy, from_moto in zip(through, straight, strict=True):
        assert via_proxy == from_moto, (
            f"{via_proxy['op']}: the proxy's answer differs from moto's\n"
            f"through the proxy:\n{_dump(via_proxy)}\nstraight from moto:\n{_dump(from_moto)}"
        )
    assert through == straight
    _check_scenario_ran(proxied, prefix)
