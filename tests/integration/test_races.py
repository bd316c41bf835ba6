"""Issue 12's races and stale answers, reproduced through the real proxy, deterministically.

Between the proxy and moto sits the holding relay (``holding.py``): it holds a chosen
upstream answer (or request) until the test releases it, so a fill, a write and a later read
overlap exactly as the test says, with no sleep deciding anything. The rule each test checks
is the one users rely on: a read that starts after a write has been answered never returns
a value from before that write, and a request DynamoDB refuses is never answered from memory.

Where a wait below has a timeout, the correct proxy ends it at once; running out of it is
the failure being tested (a read that joined a held, overtaken fill waits for that fill).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.harness import PK_SK_TABLE, dynamodb_client, serving
from tests.integration.holding import WAIT, RelayedStack, Rule

CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    max_pool_connections=16,
    read_timeout=30,
)
# A read that should go upstream at once gets this long before it counts as joined to a
# held fill: generous for a loaded machine, and only ever used up by a failing proxy.
JOIN_WAIT = 5.0
SHORT_TIMEOUT_MILLIS = 2000

K = {"pk": {"S": "k"}, "sk": {"N": "1"}}


class Stack(RelayedStack):
    """moto; the holding relay in front of it; the proxies in front of the relay."""

    def setup(self) -> None:
        super().setup()
        # The default upstream timeout (10 s) outlasts every hold below.
        self.proxy = self.start_proxy("--admin", upstream=self.relay.url)
        # Short enough for a held write to time out in the proxy; strict, for the query pages.
        self.short = self.start_proxy(
            "--mode",
            "strict",
            "--request-timeout-millis",
            str(SHORT_TIMEOUT_MILLIS),
            upstream=self.relay.url,
        )
        self.through = dynamodb_client(self.proxy.url, CONFIG)
        self.backend = dynamodb_client(self.moto.url, CONFIG)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


@pytest.fixture
def table(stack: Stack) -> Iterator[str]:
    name = f"races-{uuid.uuid4().hex[:8]}"
    stack.backend.create_table(TableName=name, **PK_SK_TABLE)
    stack.backend.put_item(TableName=name, Item={**K, "v": {"N": "1"}})
    stack.relay.reset()
    try:
        yield name
    finally:
        stack.relay.reset()  # a failed test leaves nothing held


def outcome(answer: dict[str, Any]) -> str:
    return str(answer["ResponseMetadata"]["HTTPHeaders"].get("x-daxproxy-cache", "-"))


def v_of(answer: dict[str, Any], table: str) -> str | None:
    """``v`` of k in a GetItem or BatchGetItem answer; None when k is absent."""
    if "Responses" in answer:
        items = answer["Responses"].get(table, [])
        assert len(items) <= 1, answer
        item = items[0] if items else None
    else:
        item = answer.get("Item")
    return None if item is None else str(item["v"]["N"])


def get_k(client: Any, table: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get_item(TableName=table, Key=K)
    return answer


def batch_get_k(client: Any, table: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.batch_get_item(RequestItems={table: {"Keys": [K]}})
    return answer


READERS = {"GetItem": get_k, "BatchGetItem": batch_get_k}


def code_of(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def start_held_fill(stack: Stack, table: str) -> tuple[Rule, Future[dict[str, Any]]]:
    """A GetItem of k through the proxy whose upstream answer (v=1) moto has given and the
    relay holds: a fill in flight, started before what the test does next."""
    rule = stack.relay.hold("GetItem", times=1)
    first = stack.pool.submit(get_k, stack.through, table)
    held = rule.wait()
    assert held.status == 200 and held.answer["Item"]["v"] == {"N": "1"}, held
    return rule, first


def read_after(
    stack: Stack, table: str, reader: Callable[[Any, str], dict[str, Any]], fill: Rule
) -> tuple[dict[str, Any], bool]:
    """A read through the proxy started after the write was answered, while the old fill is
    still held: its answer, and whether it had to wait for the held fill (it joined it)."""
    later = stack.pool.submit(reader, stack.through, table)
    try:
        return later.result(JOIN_WAIT), False
    except FutureTimeout:
        fill.release_all()
        return later.result(WAIT), True


def check_later_reads(
    stack: Stack,
    table: str,
    reader: Callable[[Any, str], dict[str, Any]],
    fill: Rule,
    first: Future[dict[str, Any]],
    *,
    want: str | None,
) -> None:
    """The read started after the write, then (the old fill released) one more: both must
    give moto's value ``want``, not the value the held fill read before the write."""
    truth = v_of(get_k_consistent(stack, table), table)
    assert truth == want, f"moto itself has v={truth}, not {want}"
    answer, joined = read_after(stack, table, reader, fill)
    assert (v_of(answer, table), joined) == (want, False), (
        f"{reader.__name__} started after the write was answered gave v={v_of(answer, table)} "
        f"({outcome(answer)}){', joined to the fill that read before the write' * joined}; "
        f"moto has v={want}"
    )
    fill.release_all()
    first.result(WAIT)  # began before the write: either value is right for it
    again = get_k(stack.through, table)
    assert v_of(again, table) == want, (
        f"after the overtaken fill ended, GetItem gave v={v_of(again, table)} "
        f"({outcome(again)}): the fill was stored; moto has v={want}"
    )


def get_k_consistent(stack: Stack, table: str) -> dict[str, Any]:
    answer: dict[str, Any] = stack.backend.get_item(TableName=table, Key=K, ConsistentRead=True)
    return answer


def set_v2(table: str, **more: Any) -> dict[str, Any]:
    return {
        "TableName": table,
        "Key": K,
        "UpdateExpression": "SET v = :v",
        "ExpressionAttributeValues": {":v": {"N": "2"}},
        **more,
    }


# 1. A write that evicts its key does not retire a fill in flight -------------------------


def _update(returns: str) -> Callable[[Stack, str], None]:
    def write(stack: Stack, table: str) -> None:
        stack.through.update_item(**set_v2(table, ReturnValues=returns))

    return write


def _transaction(stack: Stack, table: str) -> None:
    stack.through.transact_write_items(TransactItems=[{"Update": set_v2(table)}])


def _overlapping(stack: Stack, table: str) -> None:
    # PutItem v=3 lands at moto and its answer is held; UpdateItem v=2 lands after it and is
    # answered: the proxy sees two writes to k at once (their order unknown to it).
    rule = stack.relay.hold("PutItem", times=1)
    put = stack.pool.submit(stack.through.put_item, TableName=table, Item={**K, "v": {"N": "3"}})
    rule.wait()
    stack.through.update_item(**set_v2(table))
    assert not put.done()
    # Its answer stays held while the later read runs; the table fixture releases it.


def _server_error(stack: Stack, table: str) -> None:
    # The update lands at moto, and the proxy gets a 500: "it may have happened".
    stack.relay.fail("UpdateItem", applied=True)
    with pytest.raises(ClientError) as caught:
        stack.through.update_item(**set_v2(table))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


EVICTING_WRITES: dict[str, Callable[[Stack, str], None]] = {
    "UpdateItem ALL_OLD": _update("ALL_OLD"),
    "UpdateItem UPDATED_OLD": _update("UPDATED_OLD"),
    "UpdateItem UPDATED_NEW": _update("UPDATED_NEW"),
    "TransactWriteItems": _transaction,
    "two overlapping writes": _overlapping,
    "a 5xx on the write": _server_error,
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("write", EVICTING_WRITES)
def test_a_read_after_an_evicting_write_never_gets_the_value_from_before_it(
    stack: Stack, table: str, write: str, reader: str
) -> None:
    fill, first = start_held_fill(stack, table)
    EVICTING_WRITES[write](stack, table)
    check_later_reads(stack, table, READERS[reader], fill, first, want="2")


# 2. A fill overlapped by a PartiQL write, DeleteTable or UpdateTable ----------------------


def _partiql_update(stack: Stack, table: str) -> str | None:
    stack.through.execute_statement(
        Statement=f'UPDATE "{table}" SET v = ? WHERE pk = ? AND sk = ?',
        Parameters=[{"N": "2"}, K["pk"], K["sk"]],
    )
    return "2"


def _delete_and_create(stack: Stack, table: str) -> str | None:
    stack.through.delete_table(TableName=table)
    stack.through.create_table(TableName=table, **PK_SK_TABLE)
    return None  # the new table is empty


def _update_table(stack: Stack, table: str) -> str | None:
    # v=2 behind the proxy's back, then UpdateTable through it: the proxy drops the table's
    # items, so a read after UpdateTable's answer reads upstream, and the fill that read
    # v=1 before it must neither answer that read nor be stored.
    stack.backend.update_item(**set_v2(table))
    stack.through.update_table(
        TableName=table,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    return "2"


TABLE_WRITES: dict[str, Callable[[Stack, str], str | None]] = {
    "PartiQL UPDATE": _partiql_update,
    "DeleteTable then CreateTable": _delete_and_create,
    "UpdateTable": _update_table,
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("write", TABLE_WRITES)
def test_a_fill_overlapped_by_a_table_wide_write_is_not_stored(
    stack: Stack, table: str, write: str, reader: str
) -> None:
    fill, first = start_held_fill(stack, table)
    want = TABLE_WRITES[write](stack, table)
    check_later_reads(stack, table, READERS[reader], fill, first, want=want)


# 3. A write that timed out in the proxy and lands upstream later -------------------------


def _timed_out_put(stack: Stack, table: str, item: dict[str, Any]) -> tuple[Any, float]:
    """PutItem ``item`` through the short-timeout proxy, its request held by the relay so
    that the proxy gives up (500); the held request and when the client got the 500."""
    rule = stack.relay.hold("PutItem", times=1, stage="request")
    short = dynamodb_client(stack.short.url, CONFIG)
    put = stack.pool.submit(short.put_item, TableName=table, Item=item)
    held = rule.wait()
    with pytest.raises(ClientError) as caught:
        put.result(WAIT)
    answered_at = time.monotonic()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert not held.upstream_answered.is_set()  # it has not reached moto
    return held, answered_at


def _within_the_timeout(answered_at: float) -> None:
    elapsed = time.monotonic() - answered_at
    assert elapsed < SHORT_TIMEOUT_MILLIS / 1000, (
        f"the test took {elapsed:.2f} s after the timeout: too slow to prove anything "
        "(the write could no longer land, by the proxy's own bound)"
    )


def test_a_timed_out_write_that_lands_later_does_not_leave_the_item_stale(
    stack: Stack, table: str
) -> None:
    short = dynamodb_client(stack.short.url, CONFIG)
    held, answered_at = _timed_out_put(stack, table, {**K, "v": {"N": "2"}})
    before = get_k(short, table)  # the write has not landed: v=1 is right, not storable
    assert v_of(before, table) == "1"
    held.release()
    held.wait_upstream()
    assert held.status == 200
    after = get_k(short, table)
    _within_the_timeout(answered_at)
    assert v_of(after, table) == "2", (
        f"GetItem after the timed-out PutItem landed gave v={v_of(after, table)} "
        f"({outcome(after)}): the read between the timeout and the landing was stored"
    )


def test_a_timed_out_write_that_lands_later_does_not_leave_a_page_stale_in_strict_mode(
    stack: Stack, table: str
) -> None:
    short = dynamodb_client(stack.short.url, CONFIG)
    query = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": K["pk"]},
    }
    held, answered_at = _timed_out_put(
        stack, table, {"pk": K["pk"], "sk": {"N": "9"}, "v": {"N": "9"}}
    )
    assert short.query(**query)["Count"] == 1  # not landed yet
    held.release()
    held.wait_upstream()
    assert held.status == 200
    after = short.query(**query)
    _within_the_timeout(answered_at)
    assert after["Count"] == 2, (
        f"Query after the timed-out PutItem landed gave {after['Count']} items "
        f"({outcome(after)}): the page read between the timeout and the landing was stored"
    )


# 4. A table's ARN is the table only in its own account and region ------------------------


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:dynamodb:us-east-1:999999999999:table/{}",  # another account
        "arn:aws:dynamodb:eu-west-1:123456789012:table/{}",  # another region
        "arn:aws:dynamodb:us-east-1:123456789012:table/{}",  # moto's own: the same table
    ],
)
def test_a_query_on_an_arn_gets_the_upstreams_answer(stack: Stack, table: str, arn: str) -> None:
    query = {
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": K["pk"]},
    }
    stack.through.query(TableName=table, **query)
    assert outcome(stack.through.query(TableName=table, **query)) == "hit"
    named = arn.format(table)
    straight: Any
    try:
        straight = strip(stack.backend.query(TableName=named, **query))
    except ClientError as error:
        straight = code_of(error)
    try:
        answer = stack.through.query(TableName=named, **query)
        through: Any = strip(answer)
        how = outcome(answer)
    except ClientError as error:
        through, how = code_of(error), "error"
    assert through == straight, f"through the proxy ({how}): {through}; straight: {straight}"


def strip(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("ResponseMetadata", "ConsumedCapacity")}


# 6. A table re-created behind the proxy's back with another key schema -------------------

NEW_SCHEMA: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


@pytest.mark.parametrize("seen", ["ResourceNotFoundException", "ValidationException"])
def test_an_upstream_answer_showing_the_schema_changed_makes_the_proxy_forget_it(
    stack: Stack, table: str, seen: str
) -> None:
    assert outcome(get_k(stack.through, table)) == "miss"
    assert outcome(get_k(stack.through, table)) == "hit"
    stack.backend.delete_table(TableName=table)
    if seen == "ValidationException":
        stack.backend.create_table(TableName=table, **NEW_SCHEMA)
    other = {"pk": {"S": "other"}, "sk": {"N": "1"}}  # not cached: the proxy asks upstream
    with pytest.raises(ClientError) as caught:
        stack.through.get_item(TableName=table, Key=other)
    assert code_of(caught.value) == seen
    if seen == "ResourceNotFoundException":
        stack.backend.create_table(TableName=table, **NEW_SCHEMA)
    with pytest.raises(ClientError) as straight:
        get_k(stack.backend, table)
    try:
        answer = get_k(stack.through, table)
    except ClientError as error:
        assert code_of(error) == code_of(straight.value) == "ValidationException"
    else:
        pytest.fail(
            f"GetItem with the old key shape gave {answer.get('Item')} ({outcome(answer)}); "
            f"straight: {code_of(straight.value)}"
        )


# Issue 12 item 5: a set DynamoDB refuses is never answered from memory -------------------


@pytest.mark.parametrize(
    ("valid", "refused"),
    [
        ({"SS": ["x"]}, {"SS": ["x", "x"]}),
        ({"NS": ["1"]}, {"NS": ["1", "1.0"]}),
        # boto3 base64-encodes bytes itself, so the same bytes twice: one spelling.
        ({"BS": [b"\x00\x01"]}, {"BS": [b"\x00\x01", b"\x00\x01"]}),
    ],
    ids=["SS", "NS", "BS"],
)
def test_a_set_with_duplicate_members_is_forwarded(
    stack: Stack, table: str, valid: dict[str, Any], refused: dict[str, Any]
) -> None:
    def query(value: dict[str, Any]) -> dict[str, Any]:
        return {
            "TableName": table,
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "tags = :t",
            "ExpressionAttributeValues": {":p": K["pk"], ":t": value},
        }

    stack.through.query(**query(valid))
    assert outcome(stack.through.query(**query(valid))) == "hit"
    before = stack.relay.count("Query")
    # DynamoDB refuses the duplicates (ValidationException, "Input collection contains
    # duplicates"); moto may not. Either way the answer must be the upstream's own.
    straight: Any
    try:
        straight = strip(stack.backend.query(**query(refused)))
    except ClientError as error:
        straight = code_of(error)
    try:
        answer = stack.through.query(**query(refused))
        through: Any = strip(answer)
        how = outcome(answer)
    except ClientError as error:
        through, how = code_of(error), "error"
    assert how != "hit", f"answered from memory: {through}; straight: {straight}"
    assert stack.relay.count("Query") == before + 1  # forwarded, so upstream judged it
    assert through == straight


# The relay itself -------------------------------------------------------------------------


def test_the_relay_answers_held_requests_in_the_order_they_are_released(
    stack: Stack, table: str
) -> None:
    # Straight through the relay, no proxy: the second GetItem's answer goes back first.
    via = dynamodb_client(stack.relay.url, CONFIG)
    rule = stack.relay.hold("GetItem", times=2)
    first = stack.pool.submit(get_k, via, table)
    rule.wait(1)
    second = stack.pool.submit(get_k, via, table)
    held = rule.wait(2)
    held.release()
    assert v_of(second.result(WAIT), table) == "1"
    assert not first.done()
    rule.caught[0].release()
    assert v_of(first.result(WAIT), table) == "1"
    assert stack.relay.count("GetItem") == 2
