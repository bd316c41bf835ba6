"""The lag of ``--coherence streams`` and what following streams costs hits:
``python -m bench.stream_lag``.

Contract: starts moto (whose Streams API the proxy follows) and two proxies in front of it,
``--coherence none`` and ``--coherence streams``, and a table with a KEYS_ONLY stream. Then:

- **hits**: each proxy in turn (alternating, ``--rounds`` rounds of ``--seconds``) answers
  GetItem hits on warmed keys from ``--clients`` closed-loop tasks: hits per second and
  the proxy process's CPU time per hit (from /proc: steadier than the rate on a shared
  machine), the medians over rounds compared. The streams proxy follows the table's
  stream all along (an idle shard is read four times a second), and its CPU counts that.
- **the mix**: the 80/20 mix below without the reads that wait for a straight write,
  through each proxy for ``--seconds``: requests per second and the item cache's hit
  ratio (with streams, every write's record evicts its item, the proxy's own writes too);
- **lag**: the 80/20 mix through the streams proxy for ``--seconds`` times ``--rounds``: each
  task reads random keys and writes its own keys (so no other task changes them), a quarter
  of its writes straight to moto. After a straight write the task reads the key through
  the proxy until the new value shows: the *lag* is from the write's answer to that read's
  answer (what a client sees), p50, p99 and max; the proxy's own
  ``daxproxy_stream_lag_seconds`` (from the record's ApproximateCreationDateTime, which
  DynamoDB rounds down to the second, and moto too) is printed beside it.

Prints one JSON document. Moto is the upstream (dynalite has no Streams API), so absolute
rates are moto's, not DynamoDB's; the lag includes the follower's idle sleep (0.25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import processes, targets

TABLE = "stream-lag"
GIVE_UP = 30.0  # seconds a straight write may stay unseen before the bench counts it lost


# Moto and the proxy (without an auth_file) take any signature; moto reads the region here.
AUTH = (
    "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


def _headers(operation: str) -> dict[str, str]:
    return {
        "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": AUTH,
    }


def _call(url: str, operation: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=orjson.dumps(payload), headers=_headers(operation))
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def call(self, url: str, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = _headers(operation)
        async with self._session.post(url, data=orjson.dumps(payload), headers=headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{operation}: {r.status} {body[:200]!r}")
            answer: dict[str, Any] = orjson.loads(body)
            return answer

    async def get(self, url: str, key: str) -> str | None:
        answer = await self.call(url, "GetItem", {"TableName": TABLE, "Key": {"pk": {"S": key}}})
        item = answer.get("Item")
        return None if item is None else item["v"]["S"]

    async def put(self, url: str, key: str, value: str) -> None:
        item = {"pk": {"S": key}, "v": {"S": value}, "pad": {"S": "x" * 200}}
        await self.call(url, "PutItem", {"TableName": TABLE, "Item": item})


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user and system), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hits(
    client: Client, url: str, keys: list[str], clients: int, seconds: float
) -> tuple[float, int]:
    """Hits per second, and how many."""
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(rng: random.Random) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await client.get(url, rng.choice(keys))
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(random.Random(i)) for i in range(clients)))
    return done / (time.perf_counter() - started), done


async def mix(
    client: Client,
    proxy: str,
    moto: str,
    keys: list[str],
    *,
    clients: int,
    seconds: float,
    poll: bool,
) -> tuple[list[float], int, int]:
    """The lags of the straight writes (``poll``: each is read until seen), how many were
    never seen, and requests sent."""
    lags: list[float] = []
    lost = sent = 0
    values = itertools.count()
    stop = time.perf_counter() + seconds

    async def loop(index: int) -> None:
        nonlocal lost, sent
        rng = random.Random(index)
        own = keys[index::clients]
        while time.perf_counter() < stop:
            sent += 1
            if rng.random() < 0.8:
                await client.get(proxy, rng.choice(keys))
                continue
            key, value = rng.choice(own), str(next(values))
            if rng.random() >= 0.25:
                await client.put(proxy, key, value)
                continue
            await client.put(moto, key, value)
            written = time.perf_counter()
            while poll:
                sent += 1
                if await client.get(proxy, key) == value:
                    lags.append(time.perf_counter() - written)
                    break
                if time.perf_counter() - written > GIVE_UP:
                    lost += 1
                    break
                await asyncio.sleep(0.005)

    await asyncio.gather(*(loop(i) for i in range(clients)))
    return lags, lost, sent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cache_counts(proxy: str) -> tuple[float, float]:
    """The item cache's hits and misses so far."""
    with urllib.request.urlopen(f"{proxy}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    counts = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        counts[name] = value
    return (
        float(counts["daxproxy_item_cache_hits_total"]),
        float(counts["daxproxy_item_cache_misses_total"]),
    )


def stream_lag_metric(proxy: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{proxy}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("daxproxy_stream_lag_seconds_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name.removeprefix("daxproxy_stream_lag_seconds_")] = float(value)
    return found


async def run(
    args: argparse.Namespace, moto: str, proxies: list[processes.Child]
) -> dict[str, Any]:
    plain, streams = (child.url for child in proxies)
    pids = {"none": proxies[0].pid, "streams": proxies[1].pid}
    keys = [f"k{i}" for i in range(args.keys)]
    connector = aiohttp.TCPConnector(limit=args.clients * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session)
        for key in keys:
            await client.put(moto, key, "0")
        for url in (plain, streams):
            for key in keys:
                await client.get(url, key)
        await asyncio.sleep(1.0)  # the follower takes its place (and drops what it held)
        for key in keys:
            await client.get(streams, key)
        rates: dict[str, list[float]] = {"none": [], "streams": []}
        cpu: dict[str, list[float]] = {"none": [], "streams": []}  # microseconds per hit
        for _ in range(args.rounds):
            for label, url in (("none", plain), ("streams", streams)):
                pid = pids[label]
                assert pid is not None
                before = cpu_seconds(pid)
                rate, count = await hits(client, url, keys, args.clients, args.seconds)
                rates[label].append(round(rate))
                cpu[label].append(round(1e6 * (cpu_seconds(pid) - before) / count, 1))
        # The mix without polling, through each proxy: its rate and the item cache's hit ratio.
        mixed: dict[str, dict[str, float]] = {}
        for label, url in (("none", plain), ("streams", streams)):
            before = cache_counts(url)
            started = time.perf_counter()
            _, _, count = await mix(
                client, url, moto, keys, clients=args.clients, seconds=args.seconds, poll=False
            )
            rate = count / (time.perf_counter() - started)
            hits_, misses = (b - a for a, b in zip(before, cache_counts(url), strict=True))
            mixed[label] = {
                "requests_per_second": round(rate),
                "item_hit_ratio": round(hits_ / (hits_ + misses), 3),
            }
        lags, lost, sent = await mix(
            client,
            streams,
            moto,
            keys,
            clients=args.clients,
            seconds=args.seconds * args.rounds,
            poll=True,
        )
    none, followed = statistics.median(rates["none"]), statistics.median(rates["streams"])
    return {
        "hits_per_second": rates,
        "hit_throughput_cost_percent": round(100 * (none - followed) / none, 1),
        "proxy_cpu_us_per_hit": cpu,
        "hit_cpu_cost_percent": round(
            100 * (statistics.median(cpu["streams"]) / statistics.median(cpu["none"]) - 1), 1
        ),
        "mix_without_polling": mixed,
        "mix": {
            "requests": sent,
            "straight_writes_seen": len(lags),
            "straight_writes_lost": lost,
            "lag_ms": {
                "p50": round(1000 * percentile(lags, 0.5), 1) if lags else None,
                "p99": round(1000 * percentile(lags, 0.99), 1) if lags else None,
                "max": round(1000 * max(lags), 1) if lags else None,
            },
        },
        "daxproxy_stream_lag_seconds": stream_lag_metric(streams),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="daxproxy-stream-lag-"))
    moto = targets.start_upstream("moto", work)
    children = []
    try:
        spec = {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
        _call(
            moto.url,
            "CreateTable",
            {
                "TableName": TABLE,
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "StreamSpecification": spec,
            },
        )
        for coherence in ("none", "streams"):
            options = ("--coherence", coherence)
            children.append(processes.start_proxy(moto.url, work, options, f"proxy-{coherence}"))
        result = asyncio.run(run(args, moto.url, children))
        result["settings"] = vars(args)
        print(json.dumps(result, indent=2))
    finally:
        for child in children:
            child.stop()
        moto.stop()


if __name__ == "__main__":
    main()
