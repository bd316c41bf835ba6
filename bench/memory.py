"""Memory of the item cache: resident bytes per cached item, and the budget held.

``python -m bench.memory`` fills an :class:`ItemCache` with N items of about 200 bytes
(encoded DynamoDB JSON, as a fill stores them) in this process, and reports:

- resident memory (RSS) per item, against the item's own bytes (target: at most 2.5 times);
- tracemalloc's count of the bytes the cache allocates per entry beyond the payload, which
  is what ``ENTRY_OVERHEAD`` in ``daxproxy/core/cache.py`` must cover for the byte budget
  to bound real memory;
- a second fill into a budget of half the first's bytes: the cache must never go above it.
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import sys
import time
import tracemalloc

import orjson

from daxproxy.core.cache import ENTRY_OVERHEAD, ItemCache, entry_size
from daxproxy.core.keys import ItemKey


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def make_item(n: int) -> tuple[ItemKey, bytes]:
    pk, sk = f"user#{n:08d}", str(n % 1000)
    item = {
        "pk": {"S": pk},
        "sk": {"N": sk},
        "name": {"S": f"name-{n:08d}"},
        "email": {"S": f"user{n:08d}@example.com"},
        "score": {"N": str(n * 7 % 100_000)},
        "tags": {"SS": ["alpha", "beta"]},
        "bio": {"S": "x" * 40},
    }
    return (TABLE, pk, sk), orjson.dumps(item)


TABLE = sys.intern("arn:aws:dynamodb:us-east-1:123456789012:table/bench")


def fill(cache: ItemCache, count: int) -> int:
    payload = 0
    for n in range(count):
        key, value = make_item(n)
        cache.put(key, value)
        payload += len(value)
    return payload


def measure_overhead(sample: int) -> float:
    """Bytes allocated per entry beyond the item and key bytes themselves (tracemalloc)."""
    cache = ItemCache(1 << 40, 300.0)
    items = [make_item(n) for n in range(sample)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, value in items:
        cache.put(key, value)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # The items and keys were allocated before: what remains is the cache's own structure.
    return (after - before) / sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    overhead = measure_overhead(min(args.items, 100_000))
    gc.collect()
    base = rss_bytes()
    cache = ItemCache(1 << 40, 300.0)
    started = time.perf_counter()
    payload = fill(cache, args.items)
    elapsed = time.perf_counter() - started
    gc.collect()
    rss = rss_bytes() - base
    per_item_payload = payload / args.items
    key_bytes = sum(entry_size(make_item(n)[0], b"") - ENTRY_OVERHEAD for n in range(100)) / 100

    budget = cache.bytes // 2
    bounded = ItemCache(budget, 300.0)
    highest = 0
    for n in range(args.items):
        key, value = make_item(n)
        bounded.put(key, value)
        highest = max(highest, bounded.bytes)

    ratio = rss / payload
    lines = [
        f"machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}",
        f"items: {args.items:,} of {per_item_payload:.0f} bytes on average "
        f"(plus {key_bytes:.0f} key bytes)",
        f"fill: {elapsed:.2f} s, {args.items / elapsed:,.0f} puts/s",
        f"resident memory: {rss / args.items:.0f} bytes per item = {ratio:.2f} x the item "
        "bytes (target <= 2.5)",
        f"allocated per entry beyond its payload (tracemalloc): "
        f"{overhead - per_item_payload:.0f} bytes; ENTRY_OVERHEAD = {ENTRY_OVERHEAD}",
        f"budget {budget:,} bytes: highest {highest:,}, held {len(bounded):,} entries; "
        f"never above: {highest <= budget}",
    ]
    print("\n".join(lines))
    return 0 if highest <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
