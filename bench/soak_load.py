"""The soak's load: its key space, its mix of requests, and the paced client that sends it.

Contract: :class:`KeySpace` sizes the two tables (GetItem items and Query partitions) from
the cache budgets, with item sizes from :data:`MIN_ITEM_BYTES` to :data:`MAX_ITEM_BYTES`,
log-uniform and seeded (:func:`item_size`); :func:`seed_tables` creates both tables in the
upstream and writes every item (``dataset.DataError`` when it refuses). :class:`Mix` draws
the next request of :data:`MIX` (GetItem with Zipf keys, BatchGetItem, Query and Scan pages,
PutItem, UpdateItem, DeleteItem, and requests meant to fail), seeded. :class:`SoakLoad` is
:class:`bench.httpload.Generator` sending the mix, drawn afresh for every request and paced
to a steady rate; its tally (latencies per outcome in :data:`OUTCOMES`, errors) is taken and
renewed at each sample; a request meant to fail that gets a 4xx counts as ``rejected``.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import dataset, httpload
from bench.workloads import (
    KEY_ATTRIBUTE,
    PAGES_PER_PARTITION,
    READ,
    SORT_ATTRIBUTE,
    WRITE,
    Workload,
    Zipf,
    item,
    key_of,
    page_item,
    page_position,
    request_bytes,
)

ITEM_TABLE, PAGE_TABLE = "daxproxy-soak-items", "daxproxy-soak-pages"
MISSING_TABLE = "daxproxy-soak-no-such-table"
MIN_ITEM_BYTES, MAX_ITEM_BYTES = 100, 40 * 1024
PAGE_ITEMS = 10
BATCH_KEYS = 10
SCAN_LIMIT = 10
REQUEST_TIMEOUT_S = 5.0
# The requests meant to fail (a missing table, a wrong key): a 4xx is their right answer.
REJECT = 2
OUTCOMES = ("hit", "miss", "bypass", "stale", "write", "rejected", "none")
# The mix: operation and its share of the requests.
MIX = (
    ("GetItem", 0.50),
    ("BatchGetItem", 0.08),
    ("Query", 0.14),
    ("Scan", 0.04),
    ("PutItem", 0.10),
    ("UpdateItem", 0.05),
    ("DeleteItem", 0.03),
    ("missing-table", 0.03),
    ("bad-key", 0.03),
)
_LOG_MIN, _LOG_MAX = math.log(MIN_ITEM_BYTES), math.log(MAX_ITEM_BYTES)
# The mean of a log-uniform size between the two bounds.
MEAN_ITEM_BYTES = (MAX_ITEM_BYTES - MIN_ITEM_BYTES) / (_LOG_MAX - _LOG_MIN)


def item_size(rng: random.Random) -> int:
    """An item size from 100 B to 40 KB, log-uniform: as many 100-1,000 B items as 4-40 KB."""
    return round(math.exp(rng.uniform(_LOG_MIN, _LOG_MAX)))


def _seeded_size(seed: int, *position: int) -> int:
    return item_size(random.Random(hash((seed, *position))))


@dataclass(frozen=True)
class KeySpace:
    """The two tables: ``items`` keys of the GetItem table, ``partitions`` Query partitions
    of PAGES_PER_PARTITION pages of PAGE_ITEMS items; sizes drawn from ``seed``."""

    items: int
    partitions: int
    seed: int

    @classmethod
    def for_budgets(cls, item_bytes: int, query_bytes: int, factor: float, seed: int) -> KeySpace:
        items = max(20, math.ceil(factor * item_bytes / MEAN_ITEM_BYTES))
        per_partition = PAGE_ITEMS * PAGES_PER_PARTITION * MEAN_ITEM_BYTES
        return cls(items, max(2, math.ceil(factor * query_bytes / per_partition)), seed)

    @property
    def pages(self) -> int:
        return self.partitions * PAGES_PER_PARTITION

    def item(self, n: int) -> dict[str, Any]:
        return item(n, _seeded_size(self.seed, n))

    def page_items(self) -> Iterator[dict[str, Any]]:
        for partition in range(self.partitions):
            for index in range(PAGE_ITEMS * PAGES_PER_PARTITION):
                yield page_item(partition, index, _seeded_size(self.seed, partition, index))

    def describe(self) -> dict[str, Any]:
        page_items = self.pages * PAGE_ITEMS
        return {
            "items": self.items,
            "item_bytes_estimate": round(self.items * MEAN_ITEM_BYTES),
            "query_pages": self.pages,
            "page_items": page_items,
            "page_bytes_estimate": round(page_items * MEAN_ITEM_BYTES),
            "item_sizes": f"{MIN_ITEM_BYTES}-{MAX_ITEM_BYTES} bytes, log-uniform",
        }


def seed_tables(upstream_url: str, space: KeySpace) -> int:
    """Create both tables in the upstream and write every item; the items written."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = dataset._client(upstream_url)
    tables = (
        (ITEM_TABLE, (KEY_ATTRIBUTE,), (space.item(n) for n in range(space.items))),
        (PAGE_TABLE, (KEY_ATTRIBUTE, SORT_ATTRIBUTE), space.page_items()),
    )
    written = 0
    try:
        for table, keys, items in tables:
            dataset.create_table(client, table, keys)
            batches = _batches(items, 25)
            with ThreadPoolExecutor(dataset.SEED_THREADS) as pool:
                for count in pool.map(lambda b, t=table: _write(client, t, b), batches):
                    written += count
    except (BotoCoreError, ClientError) as exc:
        raise dataset.DataError(f"could not seed the soak's tables: {exc}") from None
    return written


def _write(client: Any, table: str, batch: list[dict[str, Any]]) -> int:
    dataset._write(client, table, batch)
    return len(batch)


def _batches(items: Iterator[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    while chunk := list(itertools.islice(items, size)):
        out.append(chunk)
    return out


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


class Mix:
    """Draws the next request of the mix: (kind, operation, JSON body). Seeded."""

    def __init__(self, space: KeySpace, skew: float, seed: int) -> None:
        self._rng = random.Random(seed)
        self._space = space
        self._keys = Zipf(space.items, skew, self._rng)
        self._pages = Zipf(space.pages, skew, self._rng)
        self._names = [name for name, _ in MIX]
        self._cumulative = list(itertools.accumulate(share for _, share in MIX))
        self._version = 1
        self._builders: dict[str, Callable[[], tuple[int, str, dict[str, Any]]]] = {
            "GetItem": lambda: (READ, "GetItem", {"TableName": ITEM_TABLE, "Key": self._key()}),
            "BatchGetItem": self._batch,
            "Query": self._query,
            "Scan": self._scan,
            "PutItem": self._put,
            "UpdateItem": self._update,
            "DeleteItem": lambda: (
                WRITE,
                "DeleteItem",
                {"TableName": ITEM_TABLE, "Key": self._key()},
            ),
            "missing-table": lambda: (
                REJECT,
                "GetItem",
                {"TableName": MISSING_TABLE, "Key": self._key()},
            ),
            "bad-key": lambda: (
                REJECT,
                "GetItem",
                {"TableName": ITEM_TABLE, "Key": {"no_such_key": {"S": "x"}}},
            ),
        }

    def _key(self, n: int | None = None) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": key_of(self._keys.draw() if n is None else n)}}

    def next(self) -> tuple[int, str, str]:
        at = self._rng.random() * self._cumulative[-1]
        name = self._names[min(bisect.bisect_left(self._cumulative, at), len(self._names) - 1)]
        kind, operation, body = self._builders[name]()
        return kind, operation, _compact(body)

    def _batch(self) -> tuple[int, str, dict[str, Any]]:
        keys = [self._key(n) for n in self._keys.distinct(min(BATCH_KEYS, self._space.items))]
        return READ, "BatchGetItem", {"RequestItems": {ITEM_TABLE: {"Keys": keys}}}

    def _query(self) -> tuple[int, str, dict[str, Any]]:
        partition, first = page_position(self._pages.draw(), PAGE_ITEMS)
        pk = {"S": f"bench#part#{partition:05d}"}
        body: dict[str, Any] = {
            "TableName": PAGE_TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": pk},
            "Limit": PAGE_ITEMS,
        }
        if first:
            body["ExclusiveStartKey"] = {
                KEY_ATTRIBUTE: pk,
                SORT_ATTRIBUTE: {"S": f"{first - 1:05d}"},
            }
        return READ, "Query", body

    def _scan(self) -> tuple[int, str, dict[str, Any]]:
        body: dict[str, Any] = {"TableName": ITEM_TABLE, "Limit": SCAN_LIMIT}
        start = self._rng.randrange(self._space.items + 1)
        if start < self._space.items:  # else the first page
            body["ExclusiveStartKey"] = self._key(start)
        return READ, "Scan", body

    def _put(self) -> tuple[int, str, dict[str, Any]]:
        self._version += 1
        n = self._keys.draw()
        written = item(n, item_size(self._rng), self._version)
        return WRITE, "PutItem", {"TableName": ITEM_TABLE, "Item": written}

    def _update(self) -> tuple[int, str, dict[str, Any]]:
        return (
            WRITE,
            "UpdateItem",
            {
                "TableName": ITEM_TABLE,
                "Key": self._key(),
                "UpdateExpression": "ADD version :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            },
        )


def _fresh_tally() -> httpload.Tally:
    # One bucket for the whole interval: the soak's timeline is its samples.
    return httpload.Tally(
        bucket_ns=1 << 62,
        latencies_us={c: [] for c in OUTCOMES},
        buckets={c: [] for c in OUTCOMES},
    )


class SoakLoad(httpload.Generator):
    """:class:`bench.httpload.Generator` sending the mix, drawn afresh for every request,
    paced to ``rate`` requests/s (0: as fast as the connections go), its tally taken and
    renewed at each sample. A request meant to fail that gets a 4xx counts as ``rejected``;
    any other answer outside 2xx is an error."""

    def __init__(self, url: str, mix: Mix, connections: int, rate: float) -> None:
        # The parent's precomputed stream is not used: a one-key workload keeps it cheap.
        super().__init__(url, Workload("soak", items=1), connections, REQUEST_TIMEOUT_S, 1e9)
        self.requests = []
        self.mix = mix
        self.tally = _fresh_tally()
        self._gap_ns = round(1e9 / rate) if rate > 0 else 0
        self._slot = 0
        self._host = f"{self.host}:{self.port}"

    def take(self) -> httpload.Tally:
        tally, self.tally = self.tally, _fresh_tally()
        return tally

    def send_next(self, connection: httpload.Connection, started: int = 0) -> None:
        if self._gap_ns and not self.stopping:
            now = time.perf_counter_ns()
            slot = max(self._slot, now)
            self._slot = slot + self._gap_ns
            if slot > now:
                loop = asyncio.get_running_loop()
                loop.call_later((slot - now) / 1e9, self._send, connection, 0)
                return
        self._send(connection, started)

    def _send(self, connection: httpload.Connection, started: int) -> None:
        transport = connection.transport
        if transport is None or transport.is_closing():
            return
        if self.stopping:
            transport.close()
            return
        kind, operation, body = self.mix.next()
        connection.kind = kind
        connection.sent_at = started or time.perf_counter_ns()
        transport.write(request_bytes(operation, body, self._host))

    def answered(self, connection: httpload.Connection, head: httpload.Head) -> None:
        now = time.perf_counter_ns()
        if self.window.open_at(now):
            expected = connection.kind == REJECT
            if expected and 400 <= head.status < 500:
                self.tally.count("rejected", now - connection.sent_at, 0)
            elif expected or not 200 <= head.status < 300:
                self.tally.errors["status"] += 1
            else:
                label = "write" if connection.kind == WRITE else head.label
                klass = label if label in OUTCOMES else "none"
                self.tally.count(klass, now - connection.sent_at, 0)
        connection.sent_at = 0
        if head.close:
            assert connection.transport is not None
            connection.transport.close()
        else:
            self.send_next(connection)
