"""The item cache through the real proxy, in front of a real moto server.

Between the proxy and moto sits a counting forwarder, so every test can say how many
upstream calls a sequence cost: that is how a hit, a shared miss or one batched fetch is
proven, not inferred from timing. A second boto3 client talks to moto straight ("behind the
proxy's back"), to show DAX's staleness and to read the truth with ConsistentRead.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.harness import PK_SK_TABLE, CountedStack, dynamodb_client, get, serving

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=32)
SHORT_TTL_MILLIS = 1500


class Stack(CountedStack):
    def setup(self) -> None:
        self.proxy = self.start_proxy()
        self.short_ttl = self.start_proxy("--record-ttl-millis", str(SHORT_TTL_MILLIS))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


def client(url: str) -> Any:
    return dynamodb_client(url, NO_RETRIES)


@pytest.fixture
def table(stack: Stack) -> str:
    name = f"items-{uuid.uuid4().hex[:8]}"
    client(stack.moto.url).create_table(TableName=name, **PK_SK_TABLE)
    stack.forwarder.reset()
    return name


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def item(pk: str, sk: int, **attributes: str) -> dict[str, Any]:
    return {**key(pk, sk), **{name: {"S": value} for name, value in attributes.items()}}


def outcome(answer: dict[str, Any]) -> str:
    return str(answer["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"])


def wait_for_gauge(url: str, name: str, value: float, seconds: float = 20) -> None:
    """Poll the proxy's /metrics until the gauge ``name`` reads ``value``."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = get(url + "/metrics")
        assert status == 200
        if f"\n{name} {float(value)}\n".encode() in body:
            return
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.01)


def truth(stack: Stack, table: str, k: dict[str, Any]) -> dict[str, Any] | None:
    answer = client(stack.moto.url).get_item(TableName=table, Key=k, ConsistentRead=True)
    return answer.get("Item")


def test_a_miss_fills_and_the_next_read_is_a_hit(stack: Stack, table: str) -> None:
    client(stack.moto.url).put_item(TableName=table, Item=item("a", 1, v="one"))
    proxy = client(stack.proxy.url)
    first = proxy.get_item(TableName=table, Key=key("a", 1))
    second = proxy.get_item(TableName=table, Key=key("a", 1))
    assert (outcome(first), outcome(second)) == ("miss", "hit")
    assert first["Item"] == second["Item"] == truth(stack, table, key("a", 1))
    assert stack.forwarder.count("GetItem") == 1
    assert stack.forwarder.count("DescribeTable") == 1  # the key schema, learned once
    ids = {first["ResponseMetadata"]["RequestId"], second["ResponseMetadata"]["RequestId"]}
    assert len(ids) == 2  # a hit never replays an old request id


def test_numbers_are_one_key_however_they_are_written(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("n", 10, v="ten"))
    for spelling in ("10", "10.0", "1E1", "100E-1"):
        answer = proxy.get_item(TableName=table, Key={"pk": {"S": "n"}, "sk": {"N": spelling}})
        assert (outcome(answer), answer["Item"]["v"]) == ("hit", {"S": "ten"})
    assert stack.forwarder.count("GetItem") == 0


def test_not_found_is_cached_too(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    assert "Item" not in proxy.get_item(TableName=table, Key=key("none", 1))
    again = proxy.get_item(TableName=table, Key=key("none", 1))
    assert ("Item" not in again, outcome(again)) == (True, "hit")
    assert stack.forwarder.count("GetItem") == 1


def test_a_write_behind_the_proxys_back_shows_only_after_the_ttl(stack: Stack, table: str) -> None:
    # DAX's documented behaviour: the item cache does not see writes that bypass it.
    proxy, backend = client(stack.short_ttl.url), client(stack.moto.url)
    backend.put_item(TableName=table, Item=item("s", 1, v="old"))
    assert proxy.get_item(TableName=table, Key=key("s", 1))["Item"]["v"] == {"S": "old"}
    stored_at = time.monotonic()
    backend.put_item(TableName=table, Item=item("s", 1, v="new"))
    stale = proxy.get_item(TableName=table, Key=key("s", 1))
    assert time.monotonic() - stored_at < SHORT_TTL_MILLIS / 1000
    assert (stale["Item"]["v"], outcome(stale)) == ({"S": "old"}, "hit")
    time.sleep(SHORT_TTL_MILLIS / 1000 + 0.2)
    fresh = proxy.get_item(TableName=table, Key=key("s", 1))
    assert (fresh["Item"]["v"], outcome(fresh)) == ({"S": "new"}, "miss")


def test_consistent_reads_bypass_the_cache_and_do_not_fill_it(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    backend.put_item(TableName=table, Item=item("c", 1, v="x"))
    for _ in range(2):
        answer = proxy.get_item(TableName=table, Key=key("c", 1), ConsistentRead=True)
        assert (outcome(answer), answer["Item"]["v"]) == ("bypass", {"S": "x"})
    assert outcome(proxy.get_item(TableName=table, Key=key("c", 1))) == "miss"
    assert stack.forwarder.count("GetItem") == 3


def test_a_hit_reports_zero_consumed_capacity(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("cap", 1))
    total = proxy.get_item(TableName=table, Key=key("cap", 1), ReturnConsumedCapacity="TOTAL")
    assert total["ConsumedCapacity"] == {"TableName": table, "CapacityUnits": 0.0}
    indexes = proxy.get_item(TableName=table, Key=key("cap", 1), ReturnConsumedCapacity="INDEXES")
    assert indexes["ConsumedCapacity"]["Table"] == {"CapacityUnits": 0.0}
    none = proxy.get_item(TableName=table, Key=key("cap", 1), ReturnConsumedCapacity="NONE")
    assert "ConsumedCapacity" not in none


def test_every_projection_of_a_key_shares_one_entry(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    full = {
        **item("p", 1, a="A", b="B"),
        "m": {"M": {"x": {"N": "1"}, "y": {"L": [{"S": "0"}, {"S": "1"}]}}},
    }
    backend.put_item(TableName=table, Item=full)
    projections = [
        {"ProjectionExpression": "a"},
        {"ProjectionExpression": "#b, m.y[1]", "ExpressionAttributeNames": {"#b": "b"}},
        {"ProjectionExpression": "m.x, nope"},
    ]
    for projection in projections:
        through = proxy.get_item(TableName=table, Key=key("p", 1), **projection)
        direct = backend.get_item(TableName=table, Key=key("p", 1), **projection)
        assert through.get("Item") == direct.get("Item")
    # moto ignores AttributesToGet on GetItem and returns the whole item; DynamoDB returns
    # just those attributes (API reference, GetItem: AttributesToGet).
    legacy = proxy.get_item(TableName=table, Key=key("p", 1), AttributesToGet=["a", "b"])
    assert legacy["Item"] == {"a": {"S": "A"}, "b": {"S": "B"}}
    assert stack.forwarder.count("GetItem") == 1


def test_a_projection_dynamodb_rejects_is_forwarded_for_dynamodbs_error(
    stack: Stack, table: str
) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    bad = {"ProjectionExpression": "a", "ExpressionAttributeNames": {"#unused": "b"}}
    errors = []
    for c in (proxy, backend):
        with pytest.raises(ClientError) as caught:
            c.get_item(TableName=table, Key=key("p", 1), **bad)
        errors.append(caught.value.response["Error"])
    assert errors[0] == errors[1]
    assert errors[0]["Code"] == "ValidationException"


def test_concurrent_misses_share_one_upstream_call(stack: Stack, table: str) -> None:
    client(stack.moto.url).put_item(TableName=table, Item=item("hot", 1, v="x"))
    stack.forwarder.reset()
    proxy = client(stack.proxy.url)
    proxy.describe_table(TableName=table)  # not cached; the schema look-up is separate
    # The first miss is held upstream until all 16 requests are in the proxy at once (its
    # in-flight gauge says so): then they can only have shared it, however slow the machine.
    gate = stack.forwarder.faults.hold["GetItem"] = threading.Event()
    with ThreadPoolExecutor(16) as pool:
        pending = [
            pool.submit(proxy.get_item, TableName=table, Key=key("hot", 1)) for _ in range(16)
        ]
        try:
            wait_for_gauge(stack.proxy.url, "daxproxy_requests_in_flight", 16)
        finally:
            gate.set()
        answers = [p.result() for p in pending]
    assert all(a["Item"]["v"] == {"S": "x"} for a in answers)
    assert stack.forwarder.count("GetItem") == 1
    assert {outcome(a) for a in answers} == {"miss"}


def test_batch_get_fetches_only_the_misses_in_one_request(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    for n in range(6):
        backend.put_item(TableName=table, Item=item("b", n, v=str(n)))
    for n in range(3):  # warm three of them
        proxy.get_item(TableName=table, Key=key("b", n))
    keys = [key("b", n) for n in range(8)]  # 3 hits, 3 misses, 2 that do not exist
    request = {table: {"Keys": keys, "ProjectionExpression": "pk, sk, v"}}
    first = proxy.batch_get_item(RequestItems=request)
    direct = backend.batch_get_item(RequestItems=request)
    by_sk = lambda answer: sorted(answer["Responses"][table], key=lambda i: i["sk"]["N"])  # noqa: E731
    assert by_sk(first) == by_sk(direct)
    assert first["UnprocessedKeys"] == {}
    assert stack.forwarder.count("BatchGetItem") == 1
    assert stack.forwarder.count("GetItem") == 3
    second = proxy.batch_get_item(RequestItems=request)  # now all from memory
    assert (outcome(second), by_sk(second)) == ("hit", by_sk(direct))
    assert stack.forwarder.count("BatchGetItem") == 1


def test_unprocessed_keys_go_back_as_asked_and_are_not_cached(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    for n in range(4):
        backend.put_item(TableName=table, Item=item("u", n, v=str(n)))
    request = {table: {"Keys": [key("u", n) for n in range(4)], "ProjectionExpression": "sk, v"}}
    stack.forwarder.faults.unprocess_batch_keys = 2
    first = proxy.batch_get_item(RequestItems=request)
    assert sorted(i["sk"]["N"] for i in first["Responses"][table]) == ["0", "1"]
    assert first["UnprocessedKeys"] == {
        table: {"Keys": [key("u", 2), key("u", 3)], "ProjectionExpression": "sk, v"}
    }
    stack.forwarder.faults.unprocess_batch_keys = 0
    second = proxy.batch_get_item(RequestItems=request)
    assert sorted(i["v"]["S"] for i in second["Responses"][table]) == ["0", "1", "2", "3"]
    assert second["UnprocessedKeys"] == {}
    assert stack.forwarder.count("BatchGetItem") == 2
    assert [outcome(proxy.get_item(TableName=table, Key=key("u", n))) for n in range(4)] == [
        "hit"
    ] * 4


def test_batch_get_consistent_tables_bypass_per_table(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    backend.put_item(TableName=table, Item=item("k", 1, v="x"))
    request = {table: {"Keys": [key("k", 1)], "ConsistentRead": True}}
    for _ in range(2):
        answer = proxy.batch_get_item(RequestItems=request)
        assert answer["Responses"][table][0]["v"] == {"S": "x"}
    assert stack.forwarder.count("BatchGetItem") == 2
    assert outcome(proxy.get_item(TableName=table, Key=key("k", 1))) == "miss"


def test_writes_go_through_to_the_cache(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("w", 1, v="put"))
    hit = proxy.get_item(TableName=table, Key=key("w", 1))
    assert (outcome(hit), hit["Item"]) == ("hit", truth(stack, table, key("w", 1)))

    updated = proxy.update_item(
        TableName=table,
        Key=key("w", 1),
        UpdateExpression="SET v = :v, extra = :e",
        ExpressionAttributeValues={":v": {"S": "updated"}, ":e": {"N": "5"}},
    )
    assert "Attributes" not in updated  # the caller asked for nothing back
    hit = proxy.get_item(TableName=table, Key=key("w", 1))
    assert (outcome(hit), hit["Item"]) == ("hit", truth(stack, table, key("w", 1)))
    assert hit["Item"]["v"] == {"S": "updated"}

    proxy.delete_item(TableName=table, Key=key("w", 1))
    gone = proxy.get_item(TableName=table, Key=key("w", 1))
    assert (outcome(gone), "Item" in gone) == ("hit", False)

    proxy.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": item("w", 2, v="batch")}},
                {"DeleteRequest": {"Key": key("w", 3)}},
            ]
        }
    )
    assert outcome(proxy.get_item(TableName=table, Key=key("w", 2))) == "hit"
    assert outcome(proxy.get_item(TableName=table, Key=key("w", 3))) == "hit"
    assert stack.forwarder.count("GetItem") == 0


def test_update_with_other_return_values_and_transactions_evict(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("e", 1, v="a"))
    proxy.put_item(TableName=table, Item=item("e", 2, v="a"))
    old = proxy.update_item(
        TableName=table,
        Key=key("e", 1),
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "b"}},
        ReturnValues="UPDATED_OLD",
    )
    assert old["Attributes"] == {"v": {"S": "a"}}
    proxy.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": item("e", 2, v="c")}}]
    )
    for n, value in ((1, "b"), (2, "c")):
        answer = proxy.get_item(TableName=table, Key=key("e", n))
        assert (outcome(answer), answer["Item"]["v"]) == ("miss", {"S": value})


def test_a_failed_condition_leaves_the_cache_untouched(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.proxy.url), client(stack.moto.url)
    proxy.put_item(TableName=table, Item=item("f", 1, v="cached"))
    with pytest.raises(ClientError) as caught:
        proxy.put_item(
            TableName=table,
            Item=item("f", 1, v="never"),
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    answer = proxy.get_item(TableName=table, Key=key("f", 1))
    assert (outcome(answer), answer["Item"]["v"]) == ("hit", {"S": "cached"})
    assert truth(stack, table, key("f", 1))["v"] == {"S": "cached"}  # type: ignore[index]
    del backend


def test_a_5xx_on_a_write_evicts_because_it_may_have_happened(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("x", 1, v="before"))
    stack.forwarder.faults.apply_then_fail = True
    stack.forwarder.faults.fail_next["PutItem"] = 1
    with pytest.raises(ClientError) as caught:
        proxy.put_item(TableName=table, Item=item("x", 1, v="after"))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    answer = proxy.get_item(TableName=table, Key=key("x", 1))
    assert (outcome(answer), answer["Item"]["v"]) == ("miss", {"S": "after"})


def test_deleting_a_table_forgets_its_items(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("d", 1, v="old life"))
    proxy.delete_table(TableName=table)
    client(stack.moto.url).create_table(TableName=table, **PK_SK_TABLE)
    answer = proxy.get_item(TableName=table, Key=key("d", 1))
    assert (outcome(answer), "Item" in answer) == ("miss", False)


def test_a_partiql_write_drops_the_tables_items(stack: Stack, table: str) -> None:
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=table, Item=item("q", 1, v="before"))
    proxy.execute_statement(
        Statement=f'UPDATE "{table}" SET v = ? WHERE pk = ? AND sk = ?',
        Parameters=[{"S": "after"}, {"S": "q"}, {"N": "1"}],
    )
    answer = proxy.get_item(TableName=table, Key=key("q", 1))
    assert (outcome(answer), answer["Item"]["v"]) == ("miss", {"S": "after"})


def test_a_projection_into_an_index_key_is_left_to_dynamodb(stack: Stack) -> None:
    name = f"indexed-{uuid.uuid4().hex[:8]}"
    client(stack.moto.url).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "colour", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-colour",
                "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    proxy = client(stack.proxy.url)
    proxy.put_item(TableName=name, Item={"pk": {"S": "a"}, "colour": {"S": "red"}})
    key = {"pk": {"S": "a"}}
    assert outcome(proxy.get_item(TableName=name, Key=key, ProjectionExpression="colour")) == "hit"
    # DynamoDB refuses a path into a key attribute ("Key attributes must be scalars").
    answer = proxy.get_item(TableName=name, Key=key, ProjectionExpression="colour.x")
    assert outcome(answer) == "bypass"
