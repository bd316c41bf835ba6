"""The fallback load generator, for machines without wrk: an aiohttp client in its own process.

Contract: ``python -m bench.pyload --url URL --connections N --duration S`` keeps N requests
in flight (one per connection, each sent as soon as the last one's answer is read) for S
seconds, every one the same request of :mod:`bench.workload` (``--request``, GetItem by
default), then prints the same
``BENCH_RESULT {json}`` line as ``bench/getitem.lua``. A request that gets no answer within
``--timeout`` seconds is counted as a timeout. It is Python on the same cores as the server
under test, so it measures itself as much as the server: its numbers are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.workload import GET_ITEM, REQUESTS, Request

RESULT_MARKER = "BENCH_RESULT "


@dataclass
class Tally:
    latencies_us: list[int] = field(default_factory=list)
    bytes: int = 0
    errors_status: int = 0
    errors_timeout: int = 0
    errors_read: int = 0
    errors_connect: int = 0


def percentile(ordered: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of an ascending sequence; 0 when it is empty."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


async def _one(
    session: aiohttp.ClientSession, url: str, request: Request, body: bytes, tally: Tally
) -> None:
    start = time.perf_counter_ns()
    try:
        async with session.post(url, data=body, headers=request.headers) as answer:
            payload = await answer.read()
    except TimeoutError:
        tally.errors_timeout += 1
        return
    except aiohttp.ClientConnectorError:
        tally.errors_connect += 1
        return
    except aiohttp.ClientError:
        tally.errors_read += 1
        return
    tally.latencies_us.append((time.perf_counter_ns() - start) // 1000)
    tally.bytes += len(payload)
    if not 200 <= answer.status < 400:
        tally.errors_status += 1


async def _worker(
    session: aiohttp.ClientSession, url: str, request: Request, deadline: float, tally: Tally
) -> None:
    body = request.body.encode()
    while time.monotonic() < deadline:
        await _one(session, url, request, body, tally)


async def run(
    url: str, connections: int, duration: float, timeout: float, request: Request = GET_ITEM
) -> dict[str, object]:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=connections)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=client_timeout,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    ) as session:
        start = time.monotonic()
        deadline = start + duration
        await asyncio.gather(
            *(_worker(session, url, request, deadline, tally) for _ in range(connections))
        )
        seconds = time.monotonic() - start
    return summarize(tally, seconds)


def latency_summary(values: list[int]) -> dict[str, float]:
    """Count, percentiles, mean and maximum of latencies in microseconds."""
    ordered = sorted(values)
    count = len(ordered)
    return {
        "count": count,
        "p50_us": percentile(ordered, 50),
        "p90_us": percentile(ordered, 90),
        "p99_us": percentile(ordered, 99),
        "p999_us": percentile(ordered, 99.9),
        "mean_us": round(sum(ordered) / count, 1) if count else 0.0,
        "max_us": ordered[-1] if ordered else 0,
    }


def summarize(tally: Tally, seconds: float) -> dict[str, object]:
    latencies = latency_summary(tally.latencies_us)
    count = int(latencies.pop("count"))
    return {
        "requests": count,
        "seconds": round(seconds, 6),
        "rps": round(count / seconds, 2) if seconds > 0 else 0.0,
        "bytes": tally.bytes,
        **latencies,
        "errors_connect": tally.errors_connect,
        "errors_read": tally.errors_read,
        "errors_write": 0,
        "errors_status": tally.errors_status,
        "errors_timeout": tally.errors_timeout,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyload", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--request", choices=sorted(REQUESTS), default=GET_ITEM.name)
    args = parser.parse_args(argv)
    request = REQUESTS[args.request]
    result = asyncio.run(run(args.url, args.connections, args.duration, args.timeout, request))
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
