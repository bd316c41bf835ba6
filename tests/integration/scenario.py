"""One scenario over the whole API, run by boto3 and by aiobotocore alike.

A scenario is a list of steps: which client, which operation, and the arguments, built from
what earlier steps returned (a stream's ARN, a shard iterator). Running it yields one
normalized outcome per step, a result or an error with every member DynamoDB sent, so the
outcomes through the proxy and straight from moto can be compared whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tests.integration.harness import PK_SK_TABLE, normalize, without_unasked_capacity

Context = dict[str, Any]


@dataclass(frozen=True)
class Step:
    label: str
    client: str  # "dynamodb" or "streams"
    operation: str  # botocore's snake_case method name
    arguments: Callable[[Context], dict[str, Any]]


def _key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def _item(pk: str, sk: int, **attributes: Any) -> dict[str, Any]:
    return {**_key(pk, sk), **attributes}


def steps(table: str) -> list[Step]:
    """Every operation the foundation must pass through, in an order that makes sense."""

    def fixed(**arguments: Any) -> Callable[[Context], dict[str, Any]]:
        return lambda ctx: arguments

    def stream_arn(ctx: Context) -> str:
        return str(ctx["list_streams"]["Streams"][0]["StreamArn"])

    return [
        Step(
            "create_table",
            "dynamodb",
            "create_table",
            fixed(
                TableName=table,
                **PK_SK_TABLE,
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            ),
        ),
        Step("describe_table", "dynamodb", "describe_table", fixed(TableName=table)),
        Step("list_tables", "dynamodb", "list_tables", fixed()),
        Step(
            "put_item",
            "dynamodb",
            "put_item",
            fixed(
                TableName=table,
                Item=_item(
                    "a",
                    1,
                    colour={"S": "red"},
                    n={"N": "1.50"},
                    tags={"SS": ["x", "y"]},
                    blob={"B": b"\x00\xffbytes"},
                    nested={"M": {"arr": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": True}]}}},
                ),
                ReturnConsumedCapacity="TOTAL",
            ),
        ),
        Step(
            "put_item_2",
            "dynamodb",
            "put_item",
            fixed(TableName=table, Item=_item("a", 2, colour={"S": "blue"}, n={"N": "7"})),
        ),
        Step("get_item", "dynamodb", "get_item", fixed(TableName=table, Key=_key("a", 1))),
        Step(
            "get_item_projected",
            "dynamodb",
            "get_item",
            fixed(
                TableName=table,
                Key=_key("a", 1),
                ProjectionExpression="#n, nested.arr[1], tags",
                ExpressionAttributeNames={"#n": "n"},
            ),
        ),
        Step("get_item_missing", "dynamodb", "get_item", fixed(TableName=table, Key=_key("zz", 9))),
        Step(
            "update_item",
            "dynamodb",
            "update_item",
            fixed(
                TableName=table,
                Key=_key("a", 2),
                UpdateExpression="SET n = n + :one, added = :s REMOVE colour",
                ExpressionAttributeValues={":one": {"N": "1"}, ":s": {"S": "new"}},
                ReturnValues="ALL_NEW",
            ),
        ),
        Step(
            "query",
            "dynamodb",
            "query",
            fixed(
                TableName=table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":pk": {"S": "a"}, ":lo": {"N": "0"}, ":hi": {"N": "5"}},
                ScanIndexForward=False,
            ),
        ),
        Step(
            "scan",
            "dynamodb",
            "scan",
            fixed(
                TableName=table,
                FilterExpression="attribute_exists(colour)",
                ReturnConsumedCapacity="TOTAL",
            ),
        ),
        Step(
            "batch_write_item",
            "dynamodb",
            "batch_write_item",
            fixed(
                RequestItems={
                    table: [
                        {"PutRequest": {"Item": _item("b", i, v={"N": str(i * i)})}}
                        for i in range(5)
                    ]
                    + [{"DeleteRequest": {"Key": _key("a", 2)}}]
                }
            ),
        ),
        Step(
            "batch_get_item",
            "dynamodb",
            "batch_get_item",
            fixed(
                RequestItems={
                    table: {
                        "Keys": [_key("b", i) for i in range(3)] + [_key("a", 2)],
                        "ProjectionExpression": "pk, sk, v",
                    }
                }
            ),
        ),
        Step(
            "transact_write_items",
            "dynamodb",
            "transact_write_items",
            fixed(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": _item("c", 1, v={"S": "t"})}},
                    {
                        "Update": {
                            "TableName": table,
                            "Key": _key("b", 0),
                            "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": {":v": {"N": "100"}},
                        }
                    },
                    {"Delete": {"TableName": table, "Key": _key("b", 4)}},
                ]
            ),
        ),
        Step(
            "transact_get_items",
            "dynamodb",
            "transact_get_items",
            fixed(
                TransactItems=[
                    {"Get": {"TableName": table, "Key": _key("c", 1)}},
                    {"Get": {"TableName": table, "Key": _key("b", 0)}},
                ]
            ),
        ),
        Step(
            "execute_statement_insert",
            "dynamodb",
            "execute_statement",
            fixed(
                Statement=f"INSERT INTO \"{table}\" VALUE {{'pk': 'p', 'sk': 1, 'via': 'partiql'}}"
            ),
        ),
        Step(
            "execute_statement_select",
            "dynamodb",
            "execute_statement",
            fixed(Statement=f'SELECT * FROM "{table}" WHERE pk = ?', Parameters=[{"S": "p"}]),
        ),
        Step(
            "update_time_to_live",
            "dynamodb",
            "update_time_to_live",
            fixed(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"},
            ),
        ),
        Step("describe_time_to_live", "dynamodb", "describe_time_to_live", fixed(TableName=table)),
        Step(
            "tag_resource",
            "dynamodb",
            "tag_resource",
            lambda ctx: {
                "ResourceArn": ctx["describe_table"]["Table"]["TableArn"],
                "Tags": [{"Key": "team", "Value": "cache"}],
            },
        ),
        Step(
            "list_tags_of_resource",
            "dynamodb",
            "list_tags_of_resource",
            lambda ctx: {"ResourceArn": ctx["describe_table"]["Table"]["TableArn"]},
        ),
        Step(
            "update_table",
            "dynamodb",
            "update_table",
            fixed(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": "colour", "AttributeType": "S"}],
                GlobalSecondaryIndexUpdates=[
                    {
                        "Create": {
                            "IndexName": "by-colour",
                            "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                    }
                ],
            ),
        ),
        Step(
            "delete_item",
            "dynamodb",
            "delete_item",
            fixed(TableName=table, Key=_key("b", 1), ReturnValues="ALL_OLD"),
        ),
        # Errors, each with every member DynamoDB sends.
        Step(
            "conditional_check_failed",
            "dynamodb",
            "put_item",
            fixed(
                TableName=table,
                Item=_item("a", 1),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        ),
        Step(
            "resource_not_found",
            "dynamodb",
            "get_item",
            fixed(TableName=table + "-missing", Key=_key("a", 1)),
        ),
        Step(
            "validation",
            "dynamodb",
            "get_item",
            fixed(TableName=table, Key={"pk": {"S": "a"}}),
        ),
        Step(
            "transaction_canceled",
            "dynamodb",
            "transact_write_items",
            fixed(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": _item("d", 1)}},
                    {
                        "ConditionCheck": {
                            "TableName": table,
                            "Key": _key("a", 1),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            ),
        ),
        # The Streams API, through a dynamodbstreams client pointed at the same endpoint.
        Step("list_streams", "streams", "list_streams", fixed(TableName=table)),
        Step(
            "describe_stream",
            "streams",
            "describe_stream",
            lambda ctx: {"StreamArn": stream_arn(ctx)},
        ),
        Step(
            "get_shard_iterator",
            "streams",
            "get_shard_iterator",
            lambda ctx: {
                "StreamArn": stream_arn(ctx),
                "ShardId": ctx["describe_stream"]["StreamDescription"]["Shards"][0]["ShardId"],
                "ShardIteratorType": "TRIM_HORIZON",
            },
        ),
        Step(
            "get_records",
            "streams",
            "get_records",
            lambda ctx: {"ShardIterator": ctx["get_shard_iterator"]["ShardIterator"]},
        ),
        Step("delete_table", "dynamodb", "delete_table", fixed(TableName=table)),
    ]


def outcome(result: dict[str, Any] | None = None, error: ClientError | None = None) -> Any:
    if error is not None:
        return {"error": normalize(error.response)}
    return normalize(result)


def comparable(outcomes: dict[str, Any], table: str) -> dict[str, Any]:
    """ListTables sees every test's tables: keep the scenario's own. The batch read asks
    for no capacity (see :func:`without_unasked_capacity`)."""
    outcomes["batch_get_item"] = without_unasked_capacity(outcomes["batch_get_item"])
    listed = outcomes.get("list_tables", {})
    if "TableNames" in listed:
        listed["TableNames"] = [t for t in listed["TableNames"] if t == table]
        listed.pop("LastEvaluatedTableName", None)
    return outcomes


def run(clients: dict[str, Any], table: str) -> dict[str, Any]:
    """Run the scenario with boto3 clients; label -> normalized outcome."""
    context: Context = {}
    outcomes: dict[str, Any] = {}
    for step in steps(table):
        try:
            context[step.label] = getattr(clients[step.client], step.operation)(
                **step.arguments(context)
            )
            outcomes[step.label] = outcome(context[step.label])
        except ClientError as error:
            outcomes[step.label] = outcome(error=error)
    return comparable(outcomes, table)


async def run_async(clients: dict[str, Any], table: str) -> dict[str, Any]:
    """The same with aiobotocore clients."""
    context: Context = {}
    outcomes: dict[str, Any] = {}
    for step in steps(table):
        try:
            context[step.label] = await getattr(clients[step.client], step.operation)(
                **step.arguments(context)
            )
            outcomes[step.label] = outcome(context[step.label])
        except ClientError as error:
            outcomes[step.label] = outcome(error=error)
    return comparable(outcomes, table)


def check_it_really_ran(outcomes: dict[str, Any], table: str) -> None:
    """The outcomes hold what the scenario did, so equal outcomes are not equal nothing."""
    assert outcomes["create_table"]["TableDescription"]["TableName"] == table
    assert outcomes["list_tables"]["TableNames"] == [table]
    assert outcomes["get_item"]["Item"]["nested"]["M"]["arr"]["L"][1] == {"S": "two"}
    projected = outcomes["get_item_projected"]["Item"]
    assert sorted(projected) == ["n", "nested", "tags"]
    assert projected["nested"] == {"M": {"arr": {"L": [{"S": "two"}]}}}
    assert "Item" not in outcomes["get_item_missing"]
    assert outcomes["update_item"]["Attributes"]["n"] == {"N": "8"}
    assert [i["sk"]["N"] for i in outcomes["query"]["Items"]] == ["2", "1"]
    assert len(outcomes["batch_get_item"]["Responses"][table]) == 3
    assert outcomes["transact_get_items"]["Responses"][1]["Item"]["v"] == {"N": "100"}
    assert outcomes["execute_statement_select"]["Items"][0]["via"] == {"S": "partiql"}
    assert outcomes["list_tags_of_resource"]["Tags"] == [{"Key": "team", "Value": "cache"}]
    assert outcomes["delete_item"]["Attributes"]["v"] == {"N": "1"}
    codes = {
        label: outcomes[label]["error"]["Error"]["Code"]
        for label in (
            "conditional_check_failed",
            "resource_not_found",
            "validation",
            "transaction_canceled",
        )
    }
    assert codes == {
        "conditional_check_failed": "ConditionalCheckFailedException",
        "resource_not_found": "ResourceNotFoundException",
        "validation": "ValidationException",
        "transaction_canceled": "TransactionCanceledException",
    }
    assert outcomes["conditional_check_failed"]["error"]["Item"]["colour"] == {"S": "red"}
    reasons = outcomes["transaction_canceled"]["error"]["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "ConditionalCheckFailed"]
    assert len(outcomes["get_records"]["Records"]) >= 5
    assert outcomes["delete_table"]["TableDescription"]["TableName"] == table
