"""The workloads of ``bench.run``: what users send, as data and as raw HTTP requests.

Contract: a :class:`Workload` is a frozen description (operation, item size, key count, Zipf
skew, write share, batch or page size, cold or warm) that survives a round trip through
:meth:`Workload.to_json` (the load generator gets it on its command line). :data:`CATALOGUE`
names every workload by its ``name``. :func:`item` and :func:`page_item` build the items a
table holds (their compact JSON is ``item_bytes`` long, give or take a byte); :func:`stream`
turns a workload into the fixed, seeded sequence of ``(kind, raw HTTP/1.1 request bytes)``
that the load generator cycles through: keys drawn from a bounded Zipf distribution over the
key space (rank ``k`` has weight ``1 / k**skew``; the ranks are shuffled over the keys), a
``write_fraction`` of them PutItems of a full item of the same key space, or a
``consistent_fraction`` of them GetItems with ``ConsistentRead`` (forwarded as they are, with
no cache work: beside a mix, they tell what a forward costs from what a write-through adds;
the mixes' streams are the same as without this share). A workload with
``caches`` off (``passthrough``) is measured through a proxy whose caches are all off: what
forwarding costs. Pure: no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

READ, WRITE = 0, 1
GET, BATCH, QUERY = "get", "batch", "query"
KEY_ATTRIBUTE, SORT_ATTRIBUTE = "pk", "sk"
DEFAULT_SKEW = 0.99
DEFAULT_ITEMS = 10_000
DEFAULT_ITEM_BYTES = 1024
# Requests in one stream before it repeats (a Zipf sample: repeating it biases nothing).
STREAM_LENGTH = 50_000
# Distinct batches (or pages) drawn before the stream picks among them.
BATCH_POOL = 500
# A key space never holds more than this many bytes of items: 40 KB items get fewer keys.
MAX_DATASET_BYTES = 64 * 1024 * 1024
CONTENT_TYPE = "application/x-amz-json-1.0"
# The proxy does not check signatures and the local servers accept any, but moto picks the
# service from the credential scope, and dynalite wants a date beside the Authorization.
_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=bench/20261128/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)
_PAD = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class Workload:
    """One kind of traffic. ``items`` is the key space (pages of a Query workload: items
    divided by ``page_items``); a cold workload starts from an empty cache."""

    name: str
    operation: str = GET  # get | batch | query
    item_bytes: int = DEFAULT_ITEM_BYTES
    items: int = DEFAULT_ITEMS
    skew: float = DEFAULT_SKEW
    write_fraction: float = 0.0
    consistent_fraction: float = 0.0
    batch_size: int = 0
    page_items: int = 10
    cold: bool = False
    caches: bool = True  # False: the proxy runs with every cache off (pass-through)
    seed: int = 20261128

    @property
    def keys(self) -> int:
        """The key space, capped so that it never holds more than MAX_DATASET_BYTES."""
        return max(1, min(self.items, MAX_DATASET_BYTES // max(1, self.item_bytes)))

    @property
    def table(self) -> str:
        kind = "pages" if self.operation == QUERY else "items"
        return f"daxproxy-bench-{kind}-{self.item_bytes}b-{self.keys}"

    @property
    def partitions(self) -> int:
        """Query: partitions of PAGES_PER_PARTITION pages of ``page_items`` items each."""
        return max(1, self.keys // (self.page_items * PAGES_PER_PARTITION))

    @property
    def items_per_read(self) -> int:
        return {GET: 1, BATCH: self.batch_size, QUERY: self.page_items}[self.operation]

    def describe(self) -> str:
        size = _size(self.item_bytes)
        if self.operation == BATCH:
            what = f"BatchGetItem of {self.batch_size} distinct keys"
        elif self.operation == QUERY:
            what = f"Query pages of {self.page_items} items ({PAGES_PER_PARTITION} per partition)"
        else:
            what = "GetItem"
        if self.write_fraction:
            reads = round((1 - self.write_fraction) * 100)
            what += f" {reads}% / PutItem {100 - reads}%"
        if self.consistent_fraction:
            reads = round((1 - self.consistent_fraction) * 100)
            what += f" {reads}% / with ConsistentRead {100 - reads}%"
        space = (
            f"{self.partitions * PAGES_PER_PARTITION:,} pages"
            if self.operation == QUERY
            else f"{self.keys:,} keys"
        )
        start = "cold cache" if self.cold else "warm cache"
        if not self.caches:
            start = "the proxy's caches off (pass-through)"
        return f"{what}, {size} items, Zipf {self.skew:g} over {space}, {start}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        return cls(**data)

    def with_options(self, **changes: Any) -> Workload:
        return replace(self, **changes)


PAGES_PER_PARTITION = 3


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


CATALOGUE: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("read-zipf"),
        Workload("passthrough", caches=False),
        Workload("cold-start", cold=True),
        Workload("mix-95-5", write_fraction=0.05),
        Workload("mix-80-20", write_fraction=0.20),
        Workload("forward-95-5", consistent_fraction=0.05),
        Workload("batch-25", operation=BATCH, batch_size=25),
        Workload("batch-100", operation=BATCH, batch_size=100),
        Workload("query", operation=QUERY),
        Workload("size-100b", item_bytes=100),
        Workload("size-10kb", item_bytes=10 * 1024),
        Workload("size-40kb", item_bytes=40 * 1024),
    )
}


def key_of(n: int) -> str:
    return f"bench#{n:07d}"


def _padded(base: dict[str, Any], size: int) -> dict[str, Any]:
    """``base`` plus a ``payload`` string that brings its compact JSON to ``size`` bytes."""
    empty = len(_compact({**base, "payload": {"S": ""}}))
    pad = max(1, size - empty)
    text = (_PAD * (pad // len(_PAD) + 1))[:pad]
    return {**base, "payload": {"S": text}}


def item(n: int, size: int, version: int = 1) -> dict[str, Any]:
    """Item ``n`` of a GetItem or BatchGetItem key space."""
    base = {KEY_ATTRIBUTE: {"S": key_of(n)}, "version": {"N": str(version)}}
    return _padded(base, size)


def page_position(unit: int, page_items: int) -> tuple[int, int]:
    """Query page ``unit``: (partition, index of its first item within the partition)."""
    partition, page = divmod(unit, PAGES_PER_PARTITION)
    return partition, page * page_items


def page_item(partition: int, index: int, size: int) -> dict[str, Any]:
    """Item ``index`` (its sort key) of a Query partition."""
    base = {
        KEY_ATTRIBUTE: {"S": f"bench#part#{partition:05d}"},
        SORT_ATTRIBUTE: {"S": f"{index:05d}"},
    }
    return _padded(base, size)


def dataset(workload: Workload) -> Iterator[dict[str, Any]]:
    """Every item of the workload's table."""
    if workload.operation == QUERY:
        per_partition = workload.page_items * PAGES_PER_PARTITION
        for partition in range(workload.partitions):
            for index in range(per_partition):
                yield page_item(partition, index, workload.item_bytes)
    else:
        for n in range(workload.keys):
            yield item(n, workload.item_bytes)


def key_schema(workload: Workload) -> tuple[str, ...]:
    return (KEY_ATTRIBUTE, SORT_ATTRIBUTE) if workload.operation == QUERY else (KEY_ATTRIBUTE,)


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


def request_bytes(operation: str, body: str, host: str) -> bytes:
    """A raw HTTP/1.1 POST of a DynamoDB operation, keep-alive."""
    encoded = body.encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"X-Amz-Target: DynamoDB_20120810.{operation}\r\nX-Amz-Date: 20261128T000000Z\r\n"
        f"Authorization: {_AUTHORIZATION}\r\nContent-Length: {len(encoded)}\r\n\r\n"
    )
    return head.encode() + encoded


def headers(operation: str) -> dict[str, str]:
    """The same headers, for http.client (which adds Host and Content-Length)."""
    return {
        "Content-Type": CONTENT_TYPE,
        "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        "X-Amz-Date": "20261128T000000Z",
        "Authorization": _AUTHORIZATION,
    }


class Zipf:
    """Draws 0..n-1: rank k (1-based) with weight 1 / k**skew, ranks shuffled over keys."""

    def __init__(self, n: int, skew: float, rng: random.Random) -> None:
        self._cumulative = list(itertools.accumulate(1.0 / (k**skew) for k in range(1, n + 1)))
        self._total = self._cumulative[-1]
        self._keys = list(range(n))
        rng.shuffle(self._keys)
        self._rng = rng

    def draw(self) -> int:
        rank = bisect.bisect_left(self._cumulative, self._rng.random() * self._total)
        return self._keys[min(rank, len(self._keys) - 1)]

    def distinct(self, count: int) -> list[int]:
        chosen: dict[int, None] = {}
        while len(chosen) < count:
            chosen[self.draw()] = None
        return list(chosen)


def get_body(workload: Workload, n: int) -> tuple[str, str]:
    key = {KEY_ATTRIBUTE: {"S": key_of(n)}}
    return "GetItem", _compact({"TableName": workload.table, "Key": key})


def consistent_get_body(workload: Workload, n: int) -> tuple[str, str]:
    key = {KEY_ATTRIBUTE: {"S": key_of(n)}}
    return "GetItem", _compact({"TableName": workload.table, "Key": key, "ConsistentRead": True})


def put_body(workload: Workload, n: int) -> tuple[str, str]:
    written = item(n, workload.item_bytes, version=2)
    return "PutItem", _compact({"TableName": workload.table, "Item": written})


def batch_body(workload: Workload, keys: list[int]) -> tuple[str, str]:
    wanted = [{KEY_ATTRIBUTE: {"S": key_of(n)}} for n in keys]
    return "BatchGetItem", _compact({"RequestItems": {workload.table: {"Keys": wanted}}})


def query_body(workload: Workload, unit: int) -> tuple[str, str]:
    partition, first = page_position(unit, workload.page_items)
    pk = {"S": f"bench#part#{partition:05d}"}
    body: dict[str, Any] = {
        "TableName": workload.table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": pk},
        "Limit": workload.page_items,
    }
    if first:
        body["ExclusiveStartKey"] = {KEY_ATTRIBUTE: pk, SORT_ATTRIBUTE: {"S": f"{first - 1:05d}"}}
    return "Query", _compact(body)


def warm_bodies(workload: Workload) -> Iterator[tuple[str, str]]:
    """Requests that read the whole data set once: what fills a cache before a warm run."""
    if workload.operation == QUERY:
        for unit in range(workload.partitions * PAGES_PER_PARTITION):
            yield query_body(workload, unit)
        return
    for start in range(0, workload.keys, 100):
        yield batch_body(workload, list(range(start, min(start + 100, workload.keys))))


def stream(workload: Workload, host: str, length: int = STREAM_LENGTH) -> list[tuple[int, bytes]]:
    """The load generator's requests, in order: seeded, so every target gets the same."""
    rng = random.Random(workload.seed)
    if workload.operation == QUERY:
        units = workload.partitions * PAGES_PER_PARTITION
        zipf = Zipf(units, workload.skew, rng)
        pages = [request_bytes(*query_body(workload, u), host) for u in range(units)]
        return [(READ, pages[zipf.draw()]) for _ in range(length)]
    zipf = Zipf(workload.keys, workload.skew, rng)
    if workload.operation == BATCH:
        size = min(workload.batch_size, workload.keys)
        pool = [
            request_bytes(*batch_body(workload, zipf.distinct(size)), host)
            for _ in range(BATCH_POOL)
        ]
        return [(READ, pool[rng.randrange(len(pool))]) for _ in range(length)]
    gets: dict[int, bytes] = {}
    puts: dict[int, bytes] = {}
    consistent: dict[int, bytes] = {}
    requests = []
    for _ in range(length):
        n = zipf.draw()
        if workload.write_fraction and rng.random() < workload.write_fraction:
            payload = puts.get(n)
            if payload is None:
                payload = puts[n] = request_bytes(*put_body(workload, n), host)
            requests.append((WRITE, payload))
        elif workload.consistent_fraction and rng.random() < workload.consistent_fraction:
            payload = consistent.get(n)
            if payload is None:
                payload = consistent[n] = request_bytes(*consistent_get_body(workload, n), host)
            requests.append((READ, payload))
        else:
            payload = gets.get(n)
            if payload is None:
                payload = gets[n] = request_bytes(*get_body(workload, n), host)
            requests.append((READ, payload))
    return requests
