"""The query cache and the admin view, through the real proxy in front of a real moto.

A counting forwarder between the proxy and moto proves what was served from memory. One
proxy runs with DAX's semantics, a short query TTL and the admin view, to show DAX's
staleness, its end, and an operator ending it early; another runs ``--mode strict``, where
a write seen by the proxy drops the table's pages.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import PK_SK_TABLE, CountedStack, get, serving
from tests.integration.harness import dynamodb_client as client

QUERY_TTL_MILLIS = 1500


class Stack(CountedStack):
    def setup(self) -> None:
        self.dax = self.start_proxy("--query-ttl-millis", str(QUERY_TTL_MILLIS), "--admin")
        self.strict = self.start_proxy("--mode", "strict")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


@pytest.fixture
def table(stack: Stack) -> str:
    name = f"queries-{uuid.uuid4().hex[:8]}"
    backend = client(stack.moto.url)
    backend.create_table(TableName=name, **PK_SK_TABLE)
    for n in range(5):
        backend.put_item(
            TableName=name, Item={"pk": {"S": "p"}, "sk": {"N": str(n)}, "v": {"S": f"v{n}"}}
        )
    stack.forwarder.reset()
    return name


def query(table: str, **more: Any) -> dict[str, Any]:
    return {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": "p"}},
        **more,
    }


def outcome(answer: dict[str, Any]) -> str:
    return str(answer["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"])


def strip(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("ResponseMetadata", "ConsumedCapacity")}


def test_a_query_is_served_from_memory(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.dax.url), client(stack.moto.url)
    first = proxy.query(**query(table))
    second = proxy.query(**query(table, ConsistentRead=False, ScanIndexForward=True))
    assert (outcome(first), outcome(second)) == ("miss", "hit")
    assert strip(first) == strip(second) == strip(backend.query(**query(table)))
    assert stack.forwarder.count("Query") == 1
    ids = {first["ResponseMetadata"]["RequestId"], second["ResponseMetadata"]["RequestId"]}
    assert len(ids) == 2


def test_dax_staleness_then_the_ttl_ends_it(stack: Stack, table: str) -> None:
    # DAX: writes, even through DAX, do not invalidate the query cache.
    proxy = client(stack.dax.url)
    before = proxy.query(**query(table))
    cached_at = time.monotonic()
    proxy.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": "9"}, "v": {"S": "new"}})
    stale = proxy.query(**query(table))
    assert time.monotonic() - cached_at < QUERY_TTL_MILLIS / 1000
    assert (outcome(stale), stale["Count"]) == ("hit", before["Count"]) == ("hit", 5)
    time.sleep(QUERY_TTL_MILLIS / 1000 + 0.2)
    fresh = proxy.query(**query(table))
    assert (outcome(fresh), fresh["Count"]) == ("miss", 6)


def test_strict_mode_drops_a_tables_pages_on_a_write(stack: Stack, table: str) -> None:
    proxy = client(stack.strict.url)
    assert proxy.query(**query(table))["Count"] == 5
    assert outcome(proxy.query(**query(table))) == "hit"
    proxy.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": "9"}, "v": {"S": "new"}})
    fresh = proxy.query(**query(table))
    assert (outcome(fresh), fresh["Count"]) == ("miss", 6)
    proxy.delete_item(TableName=table, Key={"pk": {"S": "p"}, "sk": {"N": "9"}})
    assert proxy.query(**query(table))["Count"] == 5


def test_pages_are_cached_one_by_one(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.dax.url), client(stack.moto.url)

    def pages(c: Any) -> list[dict[str, Any]]:
        out, start = [], None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page = c.query(**query(table, Limit=2, **extra))
            out.append(page)
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    first, second = pages(proxy), pages(proxy)
    assert len(first) == 3
    assert [outcome(p) for p in second] == ["hit"] * 3
    assert (
        [strip(p) for p in first]
        == [strip(p) for p in second]
        == [strip(p) for p in pages(backend)]
    )
    assert stack.forwarder.count("Query") == 3


def test_empty_results_are_cached(stack: Stack, table: str) -> None:
    proxy = client(stack.dax.url)
    empty = query(table, ExpressionAttributeValues={":p": {"S": "nobody"}})
    assert proxy.query(**empty)["Items"] == []
    again = proxy.query(**empty)
    assert (outcome(again), again["Items"]) == ("hit", [])
    assert stack.forwarder.count("Query") == 1


def test_scan_segments_are_separate_entries(stack: Stack, table: str) -> None:
    proxy, backend = client(stack.dax.url), client(stack.moto.url)
    for segment in (0, 1):
        request = {"TableName": table, "Segment": segment, "TotalSegments": 2}
        first, second = proxy.scan(**request), proxy.scan(**request)
        assert (outcome(first), outcome(second)) == ("miss", "hit")
        assert strip(first) == strip(second) == strip(backend.scan(**request))
    assert stack.forwarder.count("Scan") == 2


def test_consistent_reads_bypass(stack: Stack, table: str) -> None:
    proxy = client(stack.dax.url)
    for _ in range(2):
        assert outcome(proxy.query(**query(table, ConsistentRead=True))) == "bypass"
    assert stack.forwarder.count("Query") == 2


def test_a_hit_reports_zero_capacity(stack: Stack, table: str) -> None:
    proxy = client(stack.dax.url)
    proxy.query(**query(table, ReturnConsumedCapacity="TOTAL"))
    hit = proxy.query(**query(table, ReturnConsumedCapacity="TOTAL"))
    assert outcome(hit) == "hit"
    assert hit["ConsumedCapacity"] == {"TableName": table, "CapacityUnits": 0.0}


def test_partiql_writes_and_table_deletion_drop_pages_in_dax_mode_too(
    stack: Stack, table: str
) -> None:
    proxy = client(stack.dax.url)
    assert proxy.query(**query(table))["Count"] == 5
    proxy.execute_statement(
        Statement=f"INSERT INTO \"{table}\" VALUE {{'pk': 'p', 'sk': 7, 'v': 'partiql'}}"
    )
    after_insert = proxy.query(**query(table))
    assert (outcome(after_insert), after_insert["Count"]) == ("miss", 6)
    proxy.delete_table(TableName=table)
    client(stack.moto.url).create_table(TableName=table, **PK_SK_TABLE)
    after_delete = proxy.query(**query(table))
    assert (outcome(after_delete), after_delete["Count"]) == ("miss", 0)


def admin(stack: Stack, method: str, path: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    status, answer = get(stack.dax.url + path, 10, data=data, method=method)
    return status, json.loads(answer)


def test_the_admin_view_shows_each_cache(stack: Stack, table: str) -> None:
    proxy = client(stack.dax.url)
    proxy.query(**query(table))
    proxy.query(**query(table))
    proxy.get_item(TableName=table, Key={"pk": {"S": "p"}, "sk": {"N": "1"}})
    status, stats = admin(stack, "GET", "/admin/caches")
    assert status == 200 and stats["mode"] == "dax"
    queries, items = stats["query_cache"], stats["item_cache"]
    assert queries["hits"] >= 1 and queries["entries"] >= 1 and queries["bytes"] > 0
    assert queries["ttl_millis"] == QUERY_TTL_MILLIS and 0 < queries["hit_rate"] <= 1
    assert items["entries"] >= 1 and items["ttl_millis"] == 300_000
    assert any(arn.endswith(f":table/{table}") for arn in stats["tables"])


def test_the_admin_view_invalidates_a_key_a_table_or_everything(stack: Stack, table: str) -> None:
    proxy = client(stack.dax.url)
    key = {"pk": {"S": "p"}, "sk": {"N": "1"}}

    def warm() -> None:
        proxy.query(**query(table))
        proxy.get_item(TableName=table, Key=key)
        assert outcome(proxy.query(**query(table))) == "hit"
        assert outcome(proxy.get_item(TableName=table, Key=key)) == "hit"

    warm()
    assert admin(stack, "POST", "/admin/invalidate", {"table": table, "key": key})[0] == 200
    assert outcome(proxy.get_item(TableName=table, Key=key)) == "miss"
    assert outcome(proxy.query(**query(table))) == "hit"  # only that item went
    warm()
    assert admin(stack, "POST", "/admin/invalidate", {"table": table})[0] == 200
    assert outcome(proxy.query(**query(table))) == "miss"
    assert outcome(proxy.get_item(TableName=table, Key=key)) == "miss"
    warm()
    assert admin(stack, "POST", "/admin/invalidate", {"all": True}) == (200, {"invalidated": "all"})
    assert outcome(proxy.query(**query(table))) == "miss"
    assert outcome(proxy.get_item(TableName=table, Key=key)) == "miss"


@pytest.mark.parametrize(
    "body",
    [[], {"table": 5}, {"all": False}, {"table": "t", "other": 1}, {"all": True, "table": "t"}],
)
def test_the_admin_view_refuses_what_it_cannot_read(stack: Stack, body: object) -> None:
    status, error = admin(stack, "POST", "/admin/invalidate", body)
    assert status == 400 and error["__type"].endswith("#ValidationException")


def test_the_admin_view_is_off_unless_asked(stack: Stack) -> None:
    request = urllib.request.Request(stack.strict.url + "/admin/caches")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with caught.value as error:
        assert error.code == 404  # a GET off the routes, as DynamoDB answers it
