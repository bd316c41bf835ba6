"""PynamoDB, the ORM, gets the same answers through the proxy as straight from moto, and its
second reads are cache hits.

One scenario of model operations (create the table, save, batch writes, get, query, count,
scan, batch get, update with actions, a failed condition, transactions, delete) runs once
through the proxy and once against an identical moto server, with the same table name; each
step's outcome (items as PynamoDB gives them, or the error with DynamoDB's code) must be
equal. Every read is made twice through the proxy, and the second must say
``x-daxproxy-cache: hit`` (read from botocore's ``after-call`` event, under PynamoDB).

The scenario writes first and reads after, except on keys the item cache keeps coherent:
in ``--mode dax`` a Query after a write can be stale (README, "Use it"), and this suite
compares with moto, which never is. One step moto gets wrong (a projection of a list
element through a name, ``l[1]``) is not compared with moto: it is checked against
DynamoDB's documented answer, here and in ``tests/unit/test_where_moto_differs.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pynamodb.attributes import (
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactGet, TransactWrite

from tests.integration.conftest import Endpoints
from tests.integration.harness import REGION, TEST_ENV, normalize

pytestmark = pytest.mark.slow

# Reads whose second run must be a hit through the proxy.
READS = ("get", "get (projection)", "query", "count", "batch_get", "get (after update)")
# The steps where moto is wrong, and what it says instead of DynamoDB's answer.
MOTO_IS_WRONG = {
    "get (projection)": "ValidationException",
}


class CacheHeaders:
    """Holds the cache header of each answer the model's botocore client received."""

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, http_response: Any, **_: Any) -> None:
        self.last = http_response.headers.get("x-daxproxy-cache")


def model_for(url: str, table: str) -> Any:  # a class with its attributes
    class Details(MapAttribute[str, Any]):
        city = UnicodeAttribute()
        visits = NumberAttribute()

    class Thread(Model):
        class Meta:
            table_name = table
            host = url
            region = REGION
            aws_access_key_id = TEST_ENV["AWS_ACCESS_KEY_ID"]
            aws_secret_access_key = TEST_ENV["AWS_SECRET_ACCESS_KEY"]
            max_retry_attempts = 0  # the proxy's own answer, never a retry of it

        forum = UnicodeAttribute(hash_key=True)
        n = NumberAttribute(range_key=True)
        title = UnicodeAttribute(null=True)
        views = NumberAttribute(default=0)
        tags = UnicodeSetAttribute(null=True)
        notes = ListAttribute[Any](null=True)
        details = Details(null=True)  # type: ignore[no-untyped-call]

    return Thread


def simple(item: Model) -> dict[str, Any]:
    out = item.to_simple_dict(force=True)  # force: sets as lists
    if "tags" in out:
        out["tags"] = sorted(out["tags"])
    return out


def error_code(exc: PynamoDBException) -> str:
    return f"{type(exc).__name__}: {exc.cause_response_code}"


def run(url: str, table: str) -> tuple[dict[str, Any], dict[str, list[str | None]]]:
    """The scenario against ``url``: each step's outcome, and each read's cache headers."""
    thread = model_for(url, table)
    headers = CacheHeaders()
    connection: Connection = thread._get_connection().connection
    connection.client.meta.events.register("after-call.dynamodb", headers)
    outcomes: dict[str, Any] = {}
    caches: dict[str, list[str | None]] = {}

    def step(label: str, action: Callable[[], Any]) -> None:
        try:
            outcomes[label] = normalize(action())  # a write's raw answer: ids, clocks blanked
        except DoesNotExist:
            outcomes[label] = "DoesNotExist"
        except PynamoDBException as exc:
            outcomes[label] = error_code(exc)

    def read_twice(label: str, action: Callable[[], Any]) -> None:
        seen = []
        for _ in range(2):
            step(label, action)
            seen.append(headers.last)
        caches[label] = seen

    thread.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    step(
        "save",
        lambda: thread(
            "a",
            1,
            title="Ada",
            tags={"x", "y"},
            notes=["one", 2, {"three": 3}],
            details={"city": "Oslo", "visits": 4},
        ).save(),
    )
    with thread.batch_write() as batch:
        for n in (2, 3, 4):
            batch.save(thread("a", n, title=f"post {n}", views=n))
        batch.save(thread("b", 1, title="other forum"))
    step("batch_write delete", lambda: thread("a", 4).delete())

    read_twice("get", lambda: simple(thread.get("a", 1)))
    read_twice(
        "get (projection)", lambda: simple(thread.get("a", 1, attributes_to_get=["notes[1]"]))
    )
    read_twice(
        "query",
        lambda: [simple(i) for i in thread.query("a", thread.n >= 2, scan_index_forward=False)],
    )
    read_twice("count", lambda: thread.count("a"))
    read_twice(
        "batch_get", lambda: sorted(simple(i)["n"] for i in thread.batch_get([("a", 2), ("b", 1)]))
    )
    step("scan", lambda: sorted((i.forum, i.n) for i in thread.scan(thread.views >= 3)))
    step("get missing", lambda: simple(thread.get("zz", 9)))

    def update() -> Any:
        item = thread.get("a", 1)
        return item.update(
            actions=[
                thread.views.add(10),
                thread.notes[1].set(20),
                thread.details.visits.set(5),
                thread.tags.add({"z"}),
            ]
        )

    step("update", update)
    read_twice("get (after update)", lambda: simple(thread.get("a", 1)))
    step(
        "save (condition fails)",
        lambda: thread("a", 1).save(condition=thread.forum.does_not_exist()),
    )

    def transact() -> Any:
        with TransactWrite(connection=connection) as writes:
            writes.save(thread("c", 1, title="in a transaction"))
            writes.update(thread("a", 2), actions=[thread.title.set("changed")])
            writes.delete(thread("a", 3))
        with TransactGet(connection=connection) as reads:
            got = [reads.get(thread, "c", 1), reads.get(thread, "a", 2)]
        return [simple(g.get()) for g in got]

    step("transaction", transact)
    step("get (deleted in the transaction)", lambda: simple(thread.get("a", 3)))
    step("delete", lambda: thread("b", 1).delete())
    step("get (deleted)", lambda: simple(thread.get("b", 1)))
    thread.delete_table()
    return outcomes, caches


def test_pynamodb_gets_the_same_answers_through_the_proxy(endpoints: Endpoints) -> None:
    table = f"pynamodb-{uuid.uuid4().hex[:8]}"
    through, caches = run(endpoints.proxy, table)
    straight, _ = run(endpoints.direct, table)

    # The scenario really ran: its reads found what its writes wrote.
    assert through["get"]["notes"] == ["one", 2, {"three": 3}]
    assert [i["n"] for i in through["query"]] == [3, 2]
    assert through["count"] == 3
    assert through["batch_get"] == [1, 2]
    assert through["scan"] == [("a", 3)]
    assert through["get missing"] == "DoesNotExist"
    after = through["get (after update)"]
    assert (after["views"], after["notes"][1], after["details"]["visits"]) == (10, 20, 5)
    assert after["tags"] == ["x", "y", "z"]
    assert through["save (condition fails)"] == "PutError: ConditionalCheckFailedException"
    assert [i["title"] for i in through["transaction"]] == ["in a transaction", "changed"]
    assert through["get (deleted in the transaction)"] == "DoesNotExist"
    assert through["get (deleted)"] == "DoesNotExist"

    for label, wrong in MOTO_IS_WRONG.items():
        assert wrong in straight.pop(label), f"moto got {label!r} right: compare it again"
    # DynamoDB's answer: the element, inside its list ("Specifying Item Attributes"); views
    # is not in the answer, it is PynamoDB's default for the attribute.
    assert through.pop("get (projection)") == {"notes": [2], "views": 0}
    assert through == straight

    # A second read of each is answered from the cache.
    for label in READS:
        assert caches[label][1] == "hit", (label, caches[label])
