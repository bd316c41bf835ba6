"""Query and Scan requests as the real Python client sends them, and what no client sends."""

from __future__ import annotations

from typing import Any

import pytest

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, cbor, methods, queries
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Session
from tests.unit.dax.real_client import drive

SCHEMA = KeySchema("pk", "S", "sk", "N")


def _sent(call: Any) -> tuple[Any, ...]:
    """The arguments of the client's Query or Scan (answered with an empty page)."""
    _, sent = drive(call, calls.key_schema_reply(SCHEMA) + calls.success({}))
    [request] = [
        r
        for r in Session(max_bytes=1 << 20).receive(sent)
        if r.method in (methods.QUERY, methods.SCAN)
    ]
    return request.args


def test_a_query_with_everything() -> None:
    args = _sent(
        lambda c: c.query(
            TableName="T",
            IndexName="by_g",
            KeyConditionExpression="g = :g AND sk > :lo",
            FilterExpression="#n <> :g",
            ProjectionExpression="#n, sk",
            ExpressionAttributeNames={"#n": "name"},
            ExpressionAttributeValues={":g": {"S": "x"}, ":lo": {"N": "-1.5"}},
            ScanIndexForward=False,
            ConsistentRead=False,
            Limit=5,
            Select="SPECIFIC_ATTRIBUTES",
            ExclusiveStartKey={"g": {"S": "x"}, "pk": {"S": "u"}, "sk": {"N": "1"}},
            ReturnConsumedCapacity="INDEXES",
        )
    )
    payload, paths = queries.query_payload(args, SCHEMA)
    assert payload == {
        "TableName": "T",
        "IndexName": "by_g",
        "KeyConditionExpression": "(#n0 = :v0) AND (#n1 > :v1)",
        "FilterExpression": "#n2 <> :v2",
        "ProjectionExpression": "#n2, #n1",
        "ExpressionAttributeNames": {"#n0": "g", "#n1": "sk", "#n2": "name"},
        "ExpressionAttributeValues": {":v0": {"S": "x"}, ":v1": {"N": "-1.5"}, ":v2": {"S": "x"}},
        "ScanIndexForward": False,
        "ConsistentRead": False,
        "Limit": 5,
        "Select": "SPECIFIC_ATTRIBUTES",
        "ExclusiveStartKey": {"g": {"S": "x"}, "pk": {"S": "u"}, "sk": {"N": "1"}},
        "ReturnConsumedCapacity": "INDEXES",
    }
    assert paths == [("name",), ("sk",)]


def test_a_parallel_scan_page() -> None:
    args = _sent(
        lambda c: c.scan(
            TableName="T",
            Segment=1,
            TotalSegments=4,
            ExclusiveStartKey={"pk": {"S": "u"}, "sk": {"N": "-2"}},
            ConsistentRead=True,
        )
    )
    payload, paths = queries.scan_payload(args, SCHEMA)
    assert payload == {
        "TableName": "T",
        "Segment": 1,
        "TotalSegments": 4,
        "ExclusiveStartKey": {"pk": {"S": "u"}, "sk": {"N": "-2"}},
        "ConsistentRead": True,
        "ReturnConsumedCapacity": "NONE",
    }
    assert paths is None


def test_the_reply_the_client_reads() -> None:
    lists = AttributeLists()
    items = [{"pk": {"S": "u"}, "sk": {"N": str(n)}, "a": {"S": "x"}} for n in (-1, 2)]
    answer = {
        "Items": items,
        "Count": 2,
        "ScannedCount": 3,
        "LastEvaluatedKey": {"pk": {"S": "u"}, "sk": {"N": "2"}},
    }
    reply = queries.read_reply(answer, SCHEMA, lists, None, index=False)
    list_id = lists.id_of(("a",))
    result, _ = drive(
        lambda c: c.query(
            TableName="T",
            KeyConditionExpression="pk = :u",
            ExpressionAttributeValues={":u": {"S": "u"}},
        ),
        calls.key_schema_reply(SCHEMA) + reply + calls.attribute_list_reply(list_id, lists),
    )
    assert result == answer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({13: "5"}, "Limit must be an integer"),
        ({13: True}, "Limit must be an integer"),
        ({11: b"", 9: b"x"}, "IndexName"),
        ({11: b"i", 9: cbor.dumps([1])}, "ExclusiveStartKey"),
        ({11: b"i", 9: "text"}, "ExclusiveStartKey is a byte string"),
        ({9: b"\xff"}, "does not fit the table's key schema"),
        ({10: b"\x82\x01\x80"}, "malformed expression"),
        ({15: 9}, "SELECT has no value 9"),
    ],
)
def test_options_no_client_sends(kwargs: dict[int, Any], message: str) -> None:
    with pytest.raises(calls.CallError, match=message):
        queries.query_payload((b"T", None, kwargs), SCHEMA)
