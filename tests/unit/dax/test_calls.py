"""DAX calls and replies, read and written by the real Python client (no server, no AWS)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, cbor, errors, methods, values
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.methods import Param
from daxproxy.dax.session import Request, Session
from tests.unit.dax.real_client import drive

SCHEMA = KeySchema("pk", "S", "sk", "N")
KEY = {"pk": {"S": "u1"}, "sk": {"N": "-2.5"}}
ITEM = {
    **KEY,
    "name": {"S": "hello"},
    "age": {"N": "42"},
    "tags": {"SS": ["a", "b"]},
    "doc": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": True}, {"N": "1E+40"}]}}},
    "bin": {"B": "AQI="},
}


def _requests(sent: bytes) -> list[Request]:
    """What the client sent, less auth, key schemas and attribute-list look-ups."""
    return [
        r
        for r in Session(max_bytes=1 << 20).receive(sent)
        if r.method
        not in (
            methods.AUTHORIZE_CONNECTION,
            methods.DEFINE_KEY_SCHEMA,
            methods.DEFINE_ATTRIBUTE_LIST,
        )
    ]


def _client_item(item: dict[str, Any]) -> dict[str, Any]:
    """The client (botocore's shapes) hands binary values as bytes."""
    return {k: ({"B": b"\x01\x02"} if "B" in v else v) for k, v in item.items()}


def test_get_item_hit_reads_back_the_whole_item() -> None:
    lists = AttributeLists()
    reply = calls.get_item_reply({"Item": ITEM}, SCHEMA, lists)
    list_id = lists.id_of(("age", "bin", "doc", "name", "tags"))
    replies = calls.key_schema_reply(SCHEMA) + reply + calls.attribute_list_reply(list_id, lists)
    result, sent = drive(lambda c: c.get_item(TableName="T", Key=KEY, ConsistentRead=True), replies)
    assert result == {"Item": _client_item(ITEM)}
    [get] = _requests(sent)
    assert calls.get_item_payload(get.args, SCHEMA)[0] == {
        "TableName": "T",
        "Key": KEY,
        "ConsistentRead": True,
        "ReturnConsumedCapacity": "NONE",
    }


def test_get_item_projection_reads_back_by_position() -> None:
    answer = {"Item": {"name": {"S": "hello"}, "doc": {"M": {"l": {"L": [{"N": "1"}]}}}}}
    replies = calls.key_schema_reply(SCHEMA)
    result, sent = drive(
        lambda c: c.get_item(
            TableName="T",
            Key=KEY,
            ProjectionExpression="#n, doc.l, absent, doc.nope",
            ExpressionAttributeNames={"#n": "name"},
        ),
        replies
        + calls.get_item_reply(
            answer,
            SCHEMA,
            AttributeLists(),
            [("name",), ("doc", "l"), ("absent",), ("doc", "nope")],
        ),
    )
    # No key put back: the projection did not ask for it.
    assert result == {"Item": answer["Item"]}
    [get] = _requests(sent)
    payload, paths = calls.get_item_payload(get.args, SCHEMA)
    assert payload["ProjectionExpression"] == "#n0, #n1.#n2, #n3, #n1.#n4"
    assert paths == [("name",), ("doc", "l"), ("absent",), ("doc", "nope")]


def test_get_item_miss_is_null_never_an_empty_item() -> None:
    reply = calls.get_item_reply({}, SCHEMA, AttributeLists())
    assert reply == b"\x80\xf6"
    result, _ = drive(
        lambda c: c.get_item(TableName="T", Key=KEY), calls.key_schema_reply(SCHEMA) + reply
    )
    assert result == {}


def test_consumed_capacity_when_asked() -> None:
    answer = {"ConsumedCapacity": {"TableName": "T", "CapacityUnits": 0.5}}
    reply = calls.get_item_reply(answer, SCHEMA, AttributeLists())
    result, sent = drive(
        lambda c: c.get_item(TableName="T", Key=KEY, ReturnConsumedCapacity="TOTAL"),
        calls.key_schema_reply(SCHEMA) + reply,
    )
    assert result == {"ConsumedCapacity": {"TableName": "T", "CapacityUnits": 0.5}}
    [get] = _requests(sent)
    assert calls.get_item_payload(get.args, SCHEMA)[0]["ReturnConsumedCapacity"] == "TOTAL"


def test_put_item_sends_the_item_by_attribute_list_and_reads_all_old() -> None:
    lists = AttributeLists()
    names = ["age", "bin", "doc", "name", "tags"]
    list_id = lists.id_of(names)
    old = {**KEY, "name": {"S": "before"}}
    reply = calls.write_reply({"Attributes": old}, SCHEMA, lists)
    old_id = lists.id_of(["name"])
    replies = (
        calls.key_schema_reply(SCHEMA)
        + calls.attribute_list_id_reply(names, lists)  # the client asks for the list's id
        + reply
        + calls.attribute_list_reply(old_id, lists)
    )
    result, sent = drive(
        lambda c: c.put_item(TableName="T", Item=_client_item(ITEM), ReturnValues="ALL_OLD"),
        replies,
    )
    assert result == {"Attributes": old}
    define, put = _requests(sent)
    assert define.args == (names,)
    payload = calls.put_item_payload(put.args, SCHEMA, lists)
    assert payload == {
        "TableName": "T",
        "Item": ITEM,
        "ReturnValues": "ALL_OLD",
        "ReturnConsumedCapacity": "NONE",
    }
    assert put.args[2][0] == list_id  # the values payload opens with the list's id


def test_put_item_with_an_unknown_attribute_list_is_refused() -> None:
    values_bytes = cbor.dumps(99) + cbor.dumps("x")
    args = (b"T", bytes.fromhex("627531c1800000"), values_bytes, None)
    with pytest.raises(calls.CallError, match="unknown attribute list id 99"):
        calls.put_item_payload(args, SCHEMA, AttributeLists())


def test_put_item_without_return_values_reads_as_empty() -> None:
    lists = AttributeLists()
    names = ["age", "bin", "doc", "name", "tags"]
    replies = (
        calls.key_schema_reply(SCHEMA)
        + calls.attribute_list_id_reply(names, lists)
        + calls.write_reply({}, SCHEMA, lists)
    )
    result, _ = drive(lambda c: c.put_item(TableName="T", Item=_client_item(ITEM)), replies)
    assert result == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"T", 5, None), "a key is a byte string"),
        ((b"T", b"\xff", None), "does not fit the table's key schema"),
        ((b"", b"bu1\x80", None), "TableName"),
        ((b"\xff", b"bu1\x80", None), "UTF-8"),
        ((b"T", b"bu1\x80", [1]), "not a map"),
        ((b"T", b"bu1\x80", {3: 9}), "RETURN_CONSUMED_CAPACITY has no value 9"),
        ((b"T", b"bu1\x80", {0: b"\x82\x01\x80"}), "malformed projection"),
    ],
)
def test_get_item_arguments_no_client_sends(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(calls.CallError, match=message) as caught:
        calls.get_item_payload(args, SCHEMA)
    assert caught.value.codes == errors.CODES["ValidationException"]


def test_put_item_condition_is_rendered_from_the_tree() -> None:
    """The Python client sends the compiled condition (and, before it, its raw text under
    the same key: the last one wins)."""
    lists = AttributeLists()
    names = ["age", "bin", "doc", "name", "tags"]
    replies = calls.key_schema_reply(SCHEMA) + calls.attribute_list_id_reply(names, lists)
    _, sent = drive(
        lambda c: c.put_item(
            TableName="T",
            Item=_client_item(ITEM),
            ConditionExpression="attribute_not_exists(#p) OR #n <> :v",
            ExpressionAttributeNames={"#p": "pk", "#n": "name"},
            ExpressionAttributeValues={":v": {"S": "bob"}},
        ),
        replies,
    )
    [_, put] = _requests(sent)
    condition = put.args[3][methods.Param.CONDITION_EXPRESSION]
    assert cbor.loads(condition)[:2] == [1, [7, [12, [18, "pk"]], [1, [18, "name"], [17, 0]]]]
    payload = calls.put_item_payload(put.args, SCHEMA, lists)
    assert payload["ConditionExpression"] == "(attribute_not_exists(#n0)) OR (#n1 <> :v0)"
    assert payload["ExpressionAttributeNames"] == {"#n0": "pk", "#n1": "name"}
    assert payload["ExpressionAttributeValues"] == {":v0": {"S": "bob"}}


def test_update_item_with_condition_and_updated_new() -> None:
    lists = AttributeLists()
    reply = calls.write_reply(
        {"Attributes": {"n": {"N": "2"}, "a": {"S": "x"}}}, SCHEMA, lists, "UPDATED_NEW"
    )
    replies = calls.key_schema_reply(SCHEMA) + reply + calls.attribute_list_reply(2, lists)
    result, sent = drive(
        lambda c: c.update_item(
            TableName="T",
            Key=KEY,
            UpdateExpression="SET a = :x ADD n :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":x": {"S": "x"}, ":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        ),
        replies,
    )
    assert result == {"Attributes": {"n": {"N": "2"}, "a": {"S": "x"}}}
    [update] = _requests(sent)
    assert calls.update_item_payload(update.args, SCHEMA) == {
        "TableName": "T",
        "Key": KEY,
        "UpdateExpression": "SET #n0 = :v0 ADD #n1 :v1",
        "ConditionExpression": "attribute_exists(#n2)",
        "ExpressionAttributeNames": {"#n0": "a", "#n1": "n", "#n2": "pk"},
        "ExpressionAttributeValues": {":v0": {"S": "x"}, ":v1": {"N": "1"}},
        "ReturnValues": "UPDATED_NEW",
        "ReturnConsumedCapacity": "NONE",
    }


@pytest.mark.parametrize("returns", ["UPDATED_OLD", "UPDATED_NEW"])
def test_updated_attributes_that_are_empty_read_as_empty(returns: str) -> None:
    """``Attributes: {}`` (an update that changed nothing to return) is an attribute-list
    id and an empty map: the clients read both (``_decode_stream_item_projection``, JS
    ``Assembler._decodeStreamItemProjection``); the id alone leaves them waiting for more."""
    reply = calls.write_reply({"Attributes": {}}, SCHEMA, AttributeLists(), returns)
    assert reply == bytes.fromhex("80 a1 02 42 01 a0")
    result, _ = drive(
        lambda c: c.update_item(
            TableName="T",
            Key=KEY,
            UpdateExpression="SET a = :x",
            ExpressionAttributeValues={":x": {"S": "x"}},
            ReturnValues=returns,
        ),
        calls.key_schema_reply(SCHEMA) + reply,
    )
    assert result == {"Attributes": {}}


def test_delete_item_all_old() -> None:
    lists = AttributeLists()
    reply = calls.write_reply({"Attributes": ITEM}, SCHEMA, lists, "ALL_OLD")
    list_id = lists.id_of(("age", "bin", "doc", "name", "tags"))
    replies = calls.key_schema_reply(SCHEMA) + reply + calls.attribute_list_reply(list_id, lists)
    result, sent = drive(
        lambda c: c.delete_item(TableName="T", Key=KEY, ReturnValues="ALL_OLD"), replies
    )
    assert result == {"Attributes": _client_item(ITEM)}
    [delete] = _requests(sent)
    assert calls.delete_item_payload(delete.args, SCHEMA)["ReturnValues"] == "ALL_OLD"


def test_a_malformed_tree_is_a_validation_error() -> None:
    args = (b"T", bytes.fromhex("627531c1800000"), {4: b"\xff"})
    with pytest.raises(calls.CallError, match="malformed expression") as caught:
        calls.delete_item_payload(args, SCHEMA)
    assert caught.value.type == "ValidationException"
    args = (b"T", bytes.fromhex("627531c1800000"), {7: 4})  # ALL_NEW
    with pytest.raises(calls.CallError, match="ReturnValues ALL_NEW is not valid"):
        calls.delete_item_payload(args, SCHEMA)


def test_define_key_schema_hash_first() -> None:
    assert calls.key_schema_reply(SCHEMA) == b"\x80" + cbor.dumps({"pk": "S", "sk": "N"})
    result, _ = drive(
        lambda c: c._key_cache.get("T", c._tube_pool.get().__enter__()),
        calls.key_schema_reply(SCHEMA),
    )
    assert result == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
    ]


def test_endpoints_reply_the_client_routes_to() -> None:
    reply = calls.endpoints_reply(bytes([127, 0, 0, 1]), 8111, "node-1")
    result, _ = drive(lambda c: c.endpoints(), reply)
    [endpoint] = result
    assert (endpoint["address"], endpoint["port"], endpoint["role"]) == ("127.0.0.1", 8111, 1)
    assert endpoint["node"] == 1


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        ("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", None),
        ("com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", None),
        ("com.amazon.coral.validate#ValidationException", None),
        ("com.amazonaws.dynamodb.v20120810#ThrottlingException", None),
        ("com.amazonaws.dynamodb.v20120810#AccessDeniedException", None),
        ("InternalServerError", "InternalServerErrorException"),
        ("RequestLimitExceeded", "RequestLimitExceededException"),
        # No DAX codes of its own: the client falls back to DynamoDB's code.
        ("com.amazonaws.dynamodb.v20120810#TransactionConflictException", None),
    ],
)
def test_errors_raise_what_the_client_raises_against_dax(error_type: str, code: str | None) -> None:
    reply = errors.error_reply(error_type, "the message", 400, "REQ1")
    result, _ = drive(lambda c: c.endpoints(), reply)
    assert isinstance(result, ClientError)
    assert result.response["Error"] == {
        "Code": code or errors.short_type(error_type),
        "Message": "the message",
    }
    assert result.response["ResponseMetadata"] == {"RequestId": "REQ1", "HTTPStatusCode": 400}


def test_conditional_check_failed_bytes() -> None:
    # The protocol study's example, byte for byte.
    reply = errors.error_reply(
        "ConditionalCheckFailedException", "The conditional request failed", 400, "req-1"
    )
    assert reply.hex() == (
        "8504182518261827182b"
        + "781e"
        + b"The conditional request failed".hex()
        + "8365"
        + b"req-1".hex()
        + "781f"
        + b"ConditionalCheckFailedException".hex()
        + "190190"
    )


def test_table_not_found_from_define_key_schema() -> None:
    reply = errors.error_reply(
        "ResourceNotFoundException",
        "Requested resource not found",
        400,
        "R",
        errors.TABLE_NOT_FOUND,
    )
    result, _ = drive(lambda c: c.get_item(TableName="T", Key=KEY), reply)
    assert isinstance(result, ClientError)
    assert result.response["Error"]["Code"] == "ResourceNotFoundException"


def test_attribute_lists_never_reuse_an_id() -> None:
    lists = AttributeLists(max_lists=3)
    assert lists.id_of(()) == 1
    first = lists.id_of(("a",))
    assert lists.id_of(("a",)) == first
    second = lists.id_of(("a", "b"))
    assert len({1, first, second}) == 3
    assert lists.names_of(second) == ("a", "b")
    with pytest.raises(calls.CallError, match="3 attribute lists are named") as caught:
        calls.attribute_list_id_reply(["c"], lists)
    assert caught.value.type == "LimitExceededException"
    assert lists.names_of(first) == ("a",)
    with pytest.raises(calls.CallError, match="unknown attribute list id 42"):
        calls.attribute_list_reply(42, lists)


@pytest.mark.parametrize(
    "option",
    [[1], {}, 1.0, True, "TOTAL"],
    ids=["array", "map", "float", "bool", "text"],
)
def test_an_option_of_the_wrong_type_is_a_validation_error(option: Any) -> None:
    """Found by the fuzz: a value that cannot be looked up among a number's names (an
    array, a map) was an InternalServerError."""
    key = values.encode_key(KEY, SCHEMA)
    builds = [
        (calls.get_item_payload, Param.RETURN_CONSUMED_CAPACITY),
        (calls.delete_item_payload, Param.RETURN_CONSUMED_CAPACITY),
        (calls.delete_item_payload, Param.RETURN_VALUES),
        (calls.update_item_payload, Param.RETURN_ITEM_COLLECTION_METRICS),
    ]
    for build, param in builds:
        assert build((b"T", key, {}), SCHEMA)  # the call is well-formed without it
        with pytest.raises(calls.CallError) as caught:
            build((b"T", key, {param: option}), SCHEMA)
        assert caught.value.type == "ValidationException"


HUGE = 10**5000  # past 4300 digits Python's str raises ValueError


def test_a_huge_number_where_an_id_or_a_choice_should_be_is_a_validation_error() -> None:
    """Found by the fuzz: an error message quoting such a number raised ValueError itself,
    an InternalServerError."""
    lists = AttributeLists()
    key = values.encode_key(KEY, SCHEMA)
    builds = [
        lambda: calls.attribute_list_reply(HUGE, lists),
        lambda: calls.get_item_payload((b"T", key, {Param.RETURN_CONSUMED_CAPACITY: HUGE}), SCHEMA),
        lambda: calls.put_item_payload((b"T", key, cbor.dumps(HUGE), None), SCHEMA, lists),
    ]
    for build in builds:
        with pytest.raises(calls.CallError, match="of type int"):
            build()
    with pytest.raises(calls.CallError, match="unknown attribute list id of type bool"):
        calls.attribute_list_reply(True, lists)  # not list 1, the empty one
