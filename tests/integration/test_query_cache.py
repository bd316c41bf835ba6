"""The query cache through the real proxy, in front of a real moto server.

A counting forwarder between the proxy and moto proves what was served from memory. One
proxy runs with DAX's semantics and a short query TTL, to show DAX's staleness and its end;
another runs ``--mode strict``, where a write seen by the proxy drops the table's pages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from daxproxy.service.embedded import MotoServer
from tests.integration.counting import CountingForwarder
from tests.integration.harness import PK_SK_TABLE, REGION, ProxyProcess

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
QUERY_TTL_MILLIS = 1500


class Stack:
    def __init__(self) -> None:
        self.moto = MotoServer()
        self.moto.launch()
        self.moto.wait_ready_sync()
        self.forwarder = CountingForwarder(self.moto.url).start()
        upstream = ("--upstream", self.forwarder.url)
        self.dax = ProxyProcess(*upstream, "--query-ttl-millis", str(QUERY_TTL_MILLIS))
        self.strict = ProxyProcess(*upstream, "--mode", "strict")
        self.dax.start()
        self.strict.start()

    def stop(self) -> None:
        self.dax.stop()
        self.strict.stop()
        self.forwarder.stop()
        self.moto.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.stop()


def client(url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name=REGION, config=NO_RETRIES)


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
