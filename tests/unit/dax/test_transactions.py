"""Transactions as the real Python client sends and reads them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from botocore.exceptions import ClientError

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, errors, methods, transactions
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Session
from tests.unit.dax.real_client import drive

SCHEMAS = {"H": KeySchema("id", "S"), "R": KeySchema("pk", "S", "sk", "N")}


def _request(sent: bytes, method: methods.Method) -> Any:
    [request] = [r for r in Session(1 << 20).receive(sent) if r.method == method]
    return request


def test_transact_get_both_ways() -> None:
    lists = AttributeLists()
    answer = {
        "Responses": [
            {"Item": {"id": {"S": "a"}, "v": {"N": "1"}}},
            {},
            {"Item": {"x": {"S": "y"}}},
        ],
        "ConsumedCapacity": [
            {
                "TableName": "H",
                "CapacityUnits": 2.0,
                "ReadCapacityUnits": 2.0,
                "Table": {"CapacityUnits": 2.0},
            }
        ],
    }
    tables = ["H", "H", "R"]
    reply = transactions.transact_get_reply(answer, SCHEMAS, tables, lists, [None, None, [("x",)]])
    replies = (
        calls.key_schema_reply(SCHEMAS["H"])
        + calls.key_schema_reply(SCHEMAS["R"])
        + reply
        + calls.attribute_list_reply(lists.id_of(("v",)), lists)
    )
    gets = [
        {"Get": {"TableName": "H", "Key": {"id": {"S": "a"}}}},
        {"Get": {"TableName": "H", "Key": {"id": {"S": "b"}}}},
        {
            "Get": {
                "TableName": "R",
                "Key": {"pk": {"S": "u"}, "sk": {"N": "2"}},
                "ProjectionExpression": "x",
            }
        },
    ]
    result, sent = drive(
        lambda c: c.transact_get_items(TransactItems=gets, ReturnConsumedCapacity="TOTAL"), replies
    )
    assert result == answer
    request = _request(sent, methods.TRANSACT_GET_ITEMS)
    assert transactions.tables_of(request.args, 0) == tables
    payload, paths = transactions.transact_get_payload(request.args, SCHEMAS)
    assert payload["TransactItems"][2] == {
        "Get": {
            "TableName": "R",
            "Key": {"pk": {"S": "u"}, "sk": {"N": "2"}},
            "ProjectionExpression": "#n0",
            "ExpressionAttributeNames": {"#n0": "x"},
        }
    }
    assert paths == [None, None, [("x",)]]


def test_transact_write_both_ways() -> None:
    lists = AttributeLists()
    writes = [
        {
            "Put": {
                "TableName": "H",
                "Item": {"id": {"S": "p"}, "v": {"N": "1"}},
                "ConditionExpression": "attribute_not_exists(id)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {
            "Update": {
                "TableName": "R",
                "Key": {"pk": {"S": "u"}, "sk": {"N": "1"}},
                "UpdateExpression": "SET a = :a",
                "ExpressionAttributeValues": {":a": {"S": "b"}},
            }
        },
        {"Delete": {"TableName": "H", "Key": {"id": {"S": "d"}}}},
        {
            "ConditionCheck": {
                "TableName": "H",
                "Key": {"id": {"S": "c"}},
                "ConditionExpression": "attribute_exists(id)",
            }
        },
    ]
    expected = copy.deepcopy(writes)
    replies = (  # in the order the client asks, action by action
        calls.key_schema_reply(SCHEMAS["H"])
        + calls.attribute_list_id_reply(["v"], lists)
        + calls.key_schema_reply(SCHEMAS["R"])
        + transactions.transact_write_reply({})
    )
    result, sent = drive(
        lambda c: c.transact_write_items(TransactItems=writes, ClientRequestToken="tok"), replies
    )
    assert result == {}
    request = _request(sent, methods.TRANSACT_WRITE_ITEMS)
    payload = transactions.transact_write_payload(request.args, SCHEMAS, lists)
    expected[0]["Put"].update(
        ConditionExpression="attribute_not_exists(#n0)", ExpressionAttributeNames={"#n0": "id"}
    )
    expected[1]["Update"].update(
        UpdateExpression="SET #n0 = :v0",
        ExpressionAttributeNames={"#n0": "a"},
        ExpressionAttributeValues={":v0": {"S": "b"}},
    )
    expected[3]["ConditionCheck"].update(
        ConditionExpression="attribute_exists(#n0)", ExpressionAttributeNames={"#n0": "id"}
    )
    assert payload == {
        "TransactItems": expected,
        "ClientRequestToken": "tok",
        "ReturnConsumedCapacity": "NONE",
    }


def test_a_cancelled_transaction_with_its_reasons() -> None:
    reply = errors.error_reply(
        "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[ConditionalCheckFailed]",
        400,
        "R",
        reasons=[("ConditionalCheckFailed", "The conditional request failed", None)],
    )
    result, _ = drive(lambda c: c.endpoints(), reply)
    assert isinstance(result, ClientError)
    assert result.response["Error"]["Code"] == "TransactionCanceledException"
    assert result.cancellation_reasons == [
        "ConditionalCheckFailed",
        "The conditional request failed",
        None,
    ]


@pytest.mark.parametrize(
    "args",
    [
        ([5], [b"H"], [b"k"], None, None, None, None, None, None),  # unknown operation
        ([2], [b"H"], [b"k"], [None], None, None, None, None, None),  # a put without values
        ([9], [b"H"], [b"k"], None, None, None, None, None, None),  # an update without one
        ([12], [b"H"], [b"k"], None, None, None, None, None, None),  # a check without one
        ([7, 7], [b"H"], [b"k"], None, None, None, None, None, None),  # columns differ
        ([7], [b"H"], [b"k"], None, None, [3], None, None, None),  # on failure 3
        ([7], [b"H"], [b"k"], None, None, None, None, None, {19: 5}),  # a token not text
        # Found by the fuzz: a value of any type where a number is looked up.
        ([[7]], [b"H"], [b"k"], None, None, None, None, None, None),  # an operation array
        ([7], [b"H"], [b"k"], None, None, [{}], None, None, None),  # on failure a map
    ],
)
def test_transact_writes_no_client_sends(args: tuple[Any, ...]) -> None:
    with pytest.raises(calls.CallError):
        transactions.transact_write_payload(args, SCHEMAS, AttributeLists())


def test_a_cancelled_write_s_reasons_carry_the_old_items_as_the_js_client_reads_them() -> None:
    """The JS client reads each reason as code, message, then null or the bytes of a values
    payload (``Assembler._assembleError``: ``_decodeStreamItem(decodeCbor())``), to which
    it adds the key of that action from its own request."""
    lists = AttributeLists()
    reasons = transactions.cancellation_reasons(
        [
            {
                "Code": "ConditionalCheckFailed",
                "Message": "The conditional request failed",
                "Item": {"pk": {"S": "u"}, "sk": {"N": "2"}, "v": {"N": "1"}},
            },
            {"Code": "None"},
        ],
        ["R", "H"],
        SCHEMAS,
        lists,
    )
    list_id = lists.id_of(("v",))
    assert reasons == [
        ("ConditionalCheckFailed", "The conditional request failed", bytes([list_id, 0x01])),
        ("None", None, None),
    ]
    reply = errors.error_reply("TransactionCanceledException", "m", 400, "R", reasons=reasons)
    detail = bytes.fromhex("84 61 52 78 1c") + b"TransactionCanceledException" + b"\x19\x01\x90"
    triples = (
        bytes.fromhex("86 76")
        + b"ConditionalCheckFailed"
        + bytes.fromhex("78 1e")
        + b"The conditional request failed"
        + bytes([0x42, list_id, 0x01])
        + bytes.fromhex("64")
        + b"None"
        + bytes.fromhex("f6 f6")
    )
    assert reply.endswith(detail + triples)


def test_a_reason_whose_item_needs_a_list_none_is_left_for_goes_without_it() -> None:
    full = AttributeLists(max_lists=1)  # the empty list only
    reasons = transactions.cancellation_reasons(
        [{"Code": "ConditionalCheckFailed", "Item": {"id": {"S": "a"}, "v": {"S": "b"}}}],
        ["H"],
        SCHEMAS,
        full,
    )
    assert reasons == [("ConditionalCheckFailed", None, None)]


def test_a_reason_past_the_actions_goes_without_its_item() -> None:
    """DynamoDB gives one reason per action; an answer with more is not trusted further."""
    reasons = transactions.cancellation_reasons(
        [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": {"id": {"S": "a"}}}],
        ["H"],
        SCHEMAS,
        AttributeLists(),
    )
    assert reasons == [("None", None, None), ("ConditionalCheckFailed", None, None)]


def test_a_huge_operation_number_is_a_validation_error() -> None:
    """Found by the fuzz: its error message raised ValueError (past 4300 digits)."""
    args = ([10**5000], [b"H"], [b"k"], None, None, None, None, None, None)
    with pytest.raises(calls.CallError, match="unknown transaction operation of type int"):
        transactions.transact_write_payload(args, SCHEMAS, AttributeLists())
