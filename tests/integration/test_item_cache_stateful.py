"""Randomized and stateful: with every write going through the proxy, the item cache is never
stale.

Hypothesis runs long random sequences of PutItem, UpdateItem (every ReturnValues, update
expressions that sometimes fail), DeleteItem, BatchWriteItem, TransactWriteItems (sometimes
cancelled), GetItem (projections, ConsistentRead) and BatchGetItem, one at a time and in
bursts of 2-6 fired at once from threads, over 2 partition keys x 3 sort keys of a hash+range
table, with each number key written in several spellings ("1", "1.0", "10E-1", "0.1e1").
Between the real proxy process (``--record-ttl-millis 0``: nothing expires, so expiry cannot
hide staleness) and a real moto server sits the counting forwarder; during a burst it holds
some operations back and sometimes answers a write or a read with a 500 (applied upstream or
not), so that fills, writes and evictions really overlap upstream. The admin view evicts keys
or the whole table now and then, so that reads miss and fill again.

After every step, for every key of the key space, an eventually consistent GetItem through
the proxy (a cache hit or a fill) must equal a ConsistentRead GetItem straight from moto, and
one BatchGetItem through the proxy of all six keys must agree too. A single read or batch read
run on its own is also compared with the same read sent straight to moto.

Compared items have their numbers in one spelling and their sets sorted: a PutItem is cached
as written (as DAX does) while DynamoDB answers with normalized numbers, and moto orders set
members by its own hash order. Neither is staleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.integration.counting import CountingForwarder, Faults
from tests.integration.harness import PK_SK_TABLE, REGION, CountedStack, serving

pytestmark = pytest.mark.slow

# A request's table and the value of each write are filled in when it runs: the table is new
# for every example, and every write gets a value no earlier write had, so that an old item
# can never pass for the new one.
TABLE = "<table>"
V = "<v>"

PKS = ("a", "b")
SPELLINGS: dict[int, tuple[str, ...]] = {
    1: ("1", "1.0", "10E-1", "0.1e1"),
    2: ("2", "2.00", "20E-1", "0.2E1"),
    3: ("3", "3.0", "300e-2"),
}
KEY_SPACE = [(pk, sk) for pk in PKS for sk in SPELLINGS]

Op = tuple[str, dict[str, Any]]  # a boto3 method name and its arguments, or an admin request
CanonicalKey = tuple[str, Decimal]

BURST_MAX = 6
EXPECTED_ERRORS = frozenset(
    {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
        "ValidationException",  # the update templates that need an attribute the item lacks
    }
)
CLIENT_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    max_pool_connections=32,
    connect_timeout=5,
    read_timeout=20,  # a hang in the proxy fails the test instead of stalling it
)


def _n(value: str) -> dict[str, str]:
    return {"N": value}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


# Strategies ----------------------------------------------------------------------------

keys = st.builds(
    lambda pk, sk: {"pk": _s(pk), "sk": _n(sk)},
    st.sampled_from(PKS),
    st.sampled_from([spelling for spellings in SPELLINGS.values() for spelling in spellings]),
)


def canonical(key: dict[str, Any]) -> CanonicalKey:
    return key["pk"]["S"], Decimal(key["sk"]["N"]).normalize()


distinct_keys = st.lists(keys, min_size=1, max_size=len(KEY_SPACE), unique_by=canonical)

attributes = st.fixed_dictionaries(
    {},
    optional={
        "s": st.sampled_from(["x", "y"]).map(_s),
        # Not "50E-1": moto's arithmetic (ADD, SET a = a + b) fails with a 500 on an exponent
        # without a decimal point (it calls int() on it).
        "n": st.sampled_from(["5", "5.0", "0.5E1", "-2"]).map(_n),
        "m": st.just({"M": {"x": _n(V), "l": {"L": [_s("p"), _n("7")]}}}),
        "ss": st.sampled_from([["p"], ["p", "q"]]).map(lambda members: {"SS": members}),
    },
)


def items_with(key: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda k, extra: {**k, "v": _n(V), **extra}, key, attributes)


# (ConditionExpression, its ExpressionAttributeValues); None: unconditional.
Condition = tuple[str, dict[str, Any]] | None
conditions: st.SearchStrategy[Condition] = st.sampled_from(
    [
        None,  # as likely as a condition: most writes should happen
        None,
        None,
        None,
        None,
        ("attribute_exists(pk)", {}),
        ("attribute_not_exists(pk)", {}),
        ("s = :cs", {":cs": _s("x")}),
        ("attribute_not_exists(s) OR s <> :cs", {":cs": _s("x")}),
        ("n > :cn", {":cn": _n("4.5")}),
    ]
)

# (UpdateExpression, ExpressionAttributeValues, ExpressionAttributeNames)
UPDATES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("SET v = :v", {":v": _n(V)}, {}),
    ("SET v = :v, s = :s", {":v": _n(V), ":s": _s("x")}, {}),
    ("SET v = :v, s = :s", {":v": _n(V), ":s": _s("y")}, {}),
    ("SET v = :v REMOVE s", {":v": _n(V)}, {}),
    ("ADD n :d", {":d": _n("1")}, {}),
    ("SET m = if_not_exists(m, :m)", {":m": {"M": {"x": _n(V)}}}, {}),
    ("SET m.x = :v", {":v": _n(V)}, {}),  # fails on an item without m
    (
        "SET l = list_append(if_not_exists(l, :e), :one)",
        {":e": {"L": []}, ":one": {"L": [_n(V)]}},
        {},
    ),
    ("REMOVE s, m", {}, {}),
    ("ADD ss :set", {":set": {"SS": ["q", "r"]}}, {}),
    ("DELETE ss :set", {":set": {"SS": ["p"]}}, {}),
    ("SET #v = #v + :d", {":d": _n("10")}, {"#v": "v"}),  # fails on an item without v
]
updates = st.sampled_from(UPDATES)
RETURN_VALUES = [None, "NONE", "ALL_NEW", "ALL_OLD", "UPDATED_NEW", "UPDATED_OLD"]

PROJECTIONS: list[dict[str, Any]] = [
    {},
    {"ProjectionExpression": "v"},
    {"ProjectionExpression": "pk, sk, s, n"},
    {"ProjectionExpression": "#m.x, l[0], ss", "ExpressionAttributeNames": {"#m": "m"}},
    {"ProjectionExpression": "m.l[1], nope"},
]
projections = st.sampled_from(PROJECTIONS)


def _expression(
    params: dict[str, Any],
    condition: Condition,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``params`` with the condition and the expression values and names, empty maps left out
    (DynamoDB rejects an empty ExpressionAttributeValues)."""
    values = dict(values or {})
    if condition is not None:
        params["ConditionExpression"] = condition[0]
        values.update(condition[1])
    if values:
        params["ExpressionAttributeValues"] = values
    if names:
        params["ExpressionAttributeNames"] = names
    return params


def _returning(params: dict[str, Any], returns: str | None) -> dict[str, Any]:
    if returns is not None:
        params["ReturnValues"] = returns
    return params


@st.composite
def put_items(draw: st.DrawFn) -> Op:
    params = {"TableName": TABLE, "Item": draw(items_with(keys))}
    params = _returning(params, draw(st.sampled_from([None, "NONE", "ALL_OLD"])))
    return "put_item", _expression(params, draw(conditions))


def _update(draw: st.DrawFn, key: dict[str, Any]) -> dict[str, Any]:
    expression, values, names = draw(updates)
    params = {"TableName": TABLE, "Key": key, "UpdateExpression": expression}
    return _expression(params, draw(conditions), values, names)


@st.composite
def update_items(draw: st.DrawFn) -> Op:
    params = _update(draw, draw(keys))
    return "update_item", _returning(params, draw(st.sampled_from(RETURN_VALUES)))


@st.composite
def delete_items(draw: st.DrawFn) -> Op:
    params = {"TableName": TABLE, "Key": draw(keys)}
    params = _returning(params, draw(st.sampled_from([None, "NONE", "ALL_OLD"])))
    return "delete_item", _expression(params, draw(conditions))


@st.composite
def batch_writes(draw: st.DrawFn) -> Op:
    requests: list[dict[str, Any]] = []
    for key in draw(distinct_keys):
        if draw(st.booleans()):
            requests.append({"PutRequest": {"Item": draw(items_with(st.just(key)))}})
        else:
            requests.append({"DeleteRequest": {"Key": key}})
    return "batch_write_item", {"RequestItems": {TABLE: requests}}


@st.composite
def transactions(draw: st.DrawFn) -> Op:
    actions: list[dict[str, Any]] = []
    for key in draw(distinct_keys.map(lambda ks: ks[:4])):
        kind = draw(st.sampled_from(["Put", "Update", "Delete", "ConditionCheck"]))
        condition = draw(conditions)
        if kind == "Put":
            item = draw(items_with(st.just(key)))
            action = _expression({"TableName": TABLE, "Item": item}, condition)
        elif kind == "Update":
            action = _update(draw, key)
        elif kind == "Delete":
            action = _expression({"TableName": TABLE, "Key": key}, condition)
        else:
            check = condition or ("attribute_exists(pk)", {})
            action = _expression({"TableName": TABLE, "Key": key}, check)
        actions.append({kind: action})
    return "transact_write_items", {"TransactItems": actions}


@st.composite
def get_items(draw: st.DrawFn) -> Op:
    params = {"TableName": TABLE, "Key": draw(keys), **draw(projections)}
    if draw(st.integers(0, 4)) == 0:
        params["ConsistentRead"] = True
    return "get_item", params


@st.composite
def batch_gets(draw: st.DrawFn) -> Op:
    entry = {"Keys": draw(distinct_keys), **draw(projections)}
    if draw(st.integers(0, 4)) == 0:
        entry["ConsistentRead"] = True
    return "batch_get_item", {"RequestItems": {TABLE: entry}}


# The admin view's eviction: of one key, or of everything known of the table.
invalidations = st.one_of(
    st.just(("invalidate", {"table": TABLE})),
    keys.map(lambda key: ("invalidate", {"table": TABLE, "key": key})),
)

# Each kind of operation, as often as it appears here.
KINDS = (
    *[put_items()] * 3,
    *[update_items()] * 4,
    *[delete_items()] * 2,
    *[batch_writes()] * 2,
    *[transactions()] * 2,
    *[get_items()] * 3,
    *[batch_gets()] * 3,
    invalidations,
)
operations = st.sampled_from(KINDS).flatmap(lambda kind: kind)

# Upstream operations the forwarder may hold back during a burst, and for how long.
DELAYED = (
    "GetItem",
    "BatchGetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
)
delay_plans = st.fixed_dictionaries(
    {}, optional={operation: st.sampled_from([0.01, 0.03, 0.06]) for operation in DELAYED}
)
# An upstream 500 for the next request of one operation, forwarded to moto first (the write
# happened) or not; None (the first, so what shrinking tends to) for no fault.
faults = st.sampled_from(
    [None, *((operation, applied) for operation in DELAYED for applied in (True, False))]
)
starts = st.sampled_from([0.0, 0.0, 0.002, 0.01, 0.03])  # each burst member's start delay


# Comparing ------------------------------------------------------------------------------


def normalized(value: Any) -> Any:
    """An item with one spelling per number and sorted sets (see the module docstring)."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, member),) = value.items()
        if kind == "N":
            return {"N": str(Decimal(member).normalize())}
        if kind == "NS":
            return {"NS": sorted(str(Decimal(n).normalize()) for n in member)}
        if kind in ("SS", "BS"):
            return {kind: sorted(member)}
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def by_key(items: list[dict[str, Any]]) -> dict[CanonicalKey, Any]:
    return {canonical(item): normalized(item) for item in items}


def outcome(answer: dict[str, Any]) -> str:
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return str(headers.get("x-daxproxy-cache", "?"))


def with_table(value: Any, table: str, serials: Iterator[int]) -> Any:
    """The request with its table named and a fresh value for each write."""
    if value == TABLE:
        return table
    if value == V:
        return str(next(serials))
    if isinstance(value, dict):
        return {
            with_table(k, table, serials): with_table(v, table, serials) for k, v in value.items()
        }
    if isinstance(value, list):
        return [with_table(v, table, serials) for v in value]
    return value


# The stack --------------------------------------------------------------------------------


class _OneAtATime:
    """An aiohttp session whose requests reach moto one at a time."""

    def __init__(self, session: aiohttp.ClientSession, lock: asyncio.Lock) -> None:
        self._session = session
        self._lock = lock

    @contextlib.asynccontextmanager
    async def post(self, url: str, **options: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self._lock, self._session.post(url, **options) as answer:
            yield answer


class SerializingForwarder(CountingForwarder):
    """The counting forwarder, with moto doing one request at a time (after the delays, so
    that requests still overlap at the proxy and reach moto in any order).

    moto serves requests on parallel threads without isolating them, unlike DynamoDB: a
    cancelled TransactWriteItems puts back a copy of the whole table taken when it began, so
    a PutItem to any other key that moto acknowledged meanwhile is lost (a few in a few
    hundred, measured); concurrent conditional writes are not atomic either. Each would look
    like a stale cache without being one.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._moto_lock = asyncio.Lock()

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        one_at_a_time: Any = _OneAtATime(session, self._moto_lock)
        return await super()._forward(one_at_a_time, request)


class Stack(CountedStack):
    """moto; the serializing forwarder in front of it; the proxy (no expiry) in front of that."""

    forwarder_class = SerializingForwarder

    def setup(self) -> None:
        self.proxy = self.start_proxy("--record-ttl-millis", "0", "--admin")
        self.through = boto3.client(
            "dynamodb", endpoint_url=self.proxy.url, region_name=REGION, config=CLIENT_CONFIG
        )
        self.backend = boto3.client(
            "dynamodb", endpoint_url=self.moto.url, region_name=REGION, config=CLIENT_CONFIG
        )
        self.pool = ThreadPoolExecutor(BURST_MAX + 2)
        self.seen: Counter[str] = Counter()  # examples, steps, and each operation's outcomes

    def admin(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.proxy.url}/admin/{path}", data=data)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except urllib.error.HTTPError as error:
            with error:
                raise AssertionError(
                    f"admin {path} {payload}: {error.code} {error.read()!r}"
                ) from None

    def stop(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown()
        super().stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


# The machine ------------------------------------------------------------------------------


class CacheNeverStale(RuleBasedStateMachine):
    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.stack = stack
        self.table = f"stateful-{uuid.uuid4().hex[:8]}"
        stack.backend.create_table(TableName=self.table, **PK_SK_TABLE)
        self.serials = itertools.count(1)
        self.checks = 0
        stack.seen["examples"] += 1

    # Running operations -------------------------------------------------------------------

    def _prepare(self, op: Op) -> Op:
        method, params = op
        return method, with_table(params, self.table, self.serials)

    def _run(self, op: Op, *, faulted: bool = False) -> tuple[str, dict[str, Any]]:
        """Send one prepared operation through the proxy: its outcome and its answer."""
        method, params = op
        if method == "invalidate":
            self.stack.admin("invalidate", params)
            return "ok", {}
        try:
            answer: dict[str, Any] = getattr(self.stack.through, method)(**params)
        except ClientError as error:
            code = str(error.response["Error"]["Code"])
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            injected = faulted and status == 500
            assert code in EXPECTED_ERRORS or injected, f"{method} {params}: {error.response}"
            return code, error.response
        return "ok", answer

    def _truth(self, key: dict[str, Any], **projection: Any) -> dict[str, Any] | None:
        answer = self.stack.backend.get_item(
            TableName=self.table, Key=key, ConsistentRead=True, **projection
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item

    # Rules --------------------------------------------------------------------------------

    @rule(op=operations)
    def one_at_a_time(self, op: Op) -> None:
        prepared = self._prepare(op)
        result, answer = self._run(prepared)
        method, params = prepared
        self.stack.seen[f"{method}: {result}"] += 1
        if result != "ok":
            return
        if method == "get_item":
            self._check_get(params, answer)
        elif method == "batch_get_item":
            self._check_batch_get(params, answer)
        elif method == "update_item" and params.get("ReturnValues") in (None, "NONE"):
            assert "Attributes" not in answer, answer  # the proxy asked for ALL_NEW itself
        elif method == "update_item" and params["ReturnValues"] == "ALL_NEW":
            assert normalized(answer["Attributes"]) == normalized(self._truth(params["Key"]))

    @rule(
        burst=st.lists(st.tuples(operations, starts), min_size=2, max_size=BURST_MAX),
        delays=delay_plans,
        fault=faults,
    )
    def at_once(
        self,
        burst: list[tuple[Op, float]],
        delays: dict[str, float],
        fault: tuple[str, bool] | None,
    ) -> None:
        prepared = [(self._prepare(op), start) for op, start in burst]
        plan = Faults(delay=delays)
        if fault is not None:
            plan.fail_next[fault[0]] = 1
            plan.apply_then_fail = fault[1]
        gate = threading.Barrier(len(prepared))

        def fire(op: Op, start: float) -> tuple[str, dict[str, Any]]:
            gate.wait(10)
            time.sleep(start)
            return self._run(op, faulted=fault is not None)

        self.stack.forwarder.faults = plan
        try:
            running = [self.stack.pool.submit(fire, op, start) for op, start in prepared]
            for (op, _), future in zip(prepared, running, strict=True):
                self.stack.seen[f"{op[0]}: {future.result(60)[0]} (at once)"] += 1
        finally:
            self.stack.forwarder.faults = Faults()

    # Checks -------------------------------------------------------------------------------

    def _check_get(self, params: dict[str, Any], answer: dict[str, Any]) -> None:
        asked = {k: v for k, v in params.items() if k != "TableName"}
        truth = self.stack.backend.get_item(
            TableName=self.table, **{**asked, "ConsistentRead": True}
        )
        assert normalized(answer.get("Item")) == normalized(truth.get("Item")), (
            f"GetItem {asked} through the proxy ({outcome(answer)}): {answer.get('Item')}; "
            f"straight from moto: {truth.get('Item')}"
        )

    def _check_batch_get(self, params: dict[str, Any], answer: dict[str, Any]) -> None:
        entry = params["RequestItems"][self.table]
        truth = self.stack.backend.batch_get_item(
            RequestItems={self.table: {**entry, "ConsistentRead": True}}
        )
        assert answer["UnprocessedKeys"] == {}
        # A projection may leave the keys out: then the items are compared as a multiset.
        got = sorted(map(repr, map(normalized, answer["Responses"][self.table])))
        want = sorted(map(repr, map(normalized, truth["Responses"][self.table])))
        assert got == want, (
            f"BatchGetItem {entry} through the proxy ({outcome(answer)}): {got}; "
            f"straight from moto: {want}"
        )

    @invariant()
    def the_cache_agrees_with_the_backend(self) -> None:
        self.checks += 1
        self.stack.seen["checks"] += 1
        # The reads spell each key another way each time, and take turns at filling the cache.
        asked = [
            {"pk": _s(pk), "sk": _n(SPELLINGS[sk][self.checks % len(SPELLINGS[sk])])}
            for pk, sk in KEY_SPACE
        ]
        truth = {
            (pk, Decimal(sk)): normalized(self._truth({"pk": _s(pk), "sk": _n(str(sk))}))
            for pk, sk in KEY_SPACE
        }
        if self.checks % 2:
            self._check_all_batched(asked, truth)
            self._check_each(asked, truth)
        else:
            self._check_each(asked, truth)
            self._check_all_batched(asked, truth)

    def _check_each(self, asked: list[dict[str, Any]], truth: dict[CanonicalKey, Any]) -> None:
        for key in asked:
            answer = self.stack.through.get_item(TableName=self.table, Key=key)
            assert normalized(answer.get("Item")) == truth[canonical(key)], (
                f"stale: GetItem {key} through the proxy ({outcome(answer)}): "
                f"{answer.get('Item')}; ConsistentRead straight from moto: "
                f"{truth[canonical(key)]}"
            )

    def _check_all_batched(
        self, asked: list[dict[str, Any]], truth: dict[CanonicalKey, Any]
    ) -> None:
        answer = self.stack.through.batch_get_item(RequestItems={self.table: {"Keys": asked}})
        assert answer["UnprocessedKeys"] == {}
        got = by_key(answer["Responses"][self.table])
        want = {key: item for key, item in truth.items() if item is not None}
        assert got == want, (
            f"stale: BatchGetItem of every key through the proxy ({outcome(answer)}): {got}; "
            f"ConsistentRead straight from moto: {want}"
        )


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_with_every_write_through_the_proxy_the_item_cache_is_never_stale(stack: Stack) -> None:
    run_state_machine_as_test(lambda: CacheNeverStale(stack), settings=SETTINGS)
    caches = stack.admin("caches")["item_cache"]
    # The run proves something only if the cache served reads and writes changed it.
    assert caches["hits"] > 0, caches
    assert caches["evicted"].get("write", 0) > 0, caches
    print(f"\nitem cache after the run: {caches}")
    print(f"upstream calls: {dict(stack.forwarder.counts)}")
    print(f"seen: {dict(sorted(stack.seen.items()))}")
