"""The lag of the change channel between workers: ``python -m bench.change_lag``.

Contract: three processes, as ``--workers 2`` runs them: this one runs the
:class:`~daxproxy.workers.channel.ChangeHub` (the supervisor's part); a *writer* child
sends ``--changes`` PutItems through its proxy (``build_proxy`` with a ChangeLink, in front
of :class:`bench.inprocess.FakeUpstream`, which answers at once), one every
``--interval-ms``; a *reader* child, linked to the same hub, applies each change to its
caches and records its lag (publication to application, on CLOCK_MONOTONIC, which every
process on the host shares: what ``daxproxy_change_lag_seconds`` observes). With
``--busy`` the reader serves cache hits all the while, yielding to its event loop every
``--hits-per-turn`` hits, as a worker under load does between reads of its sockets.
Every process runs the event loop ``--event-loop`` names (``auto``: uvloop where it is
installed, as the proxy does). Prints the lag's p50, p90, p99 and maximum in
microseconds, idle and busy (or the one asked), and the hits the busy reader served per
second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson

from bench.inprocess import ITEM_1K, TARGET, FakeUpstream, _client_headers
from daxproxy.edge.loops import loop_factory


def _run_on(choice: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    factory, _ = loop_factory(choice)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)


def _request(operation: str, payload: dict[str, Any]) -> Any:
    from daxproxy.service.proxy import ClientRequest

    body = orjson.dumps(payload)
    return ClientRequest(_client_headers(operation, body), body, TARGET + operation, None, "/")


async def _linked_proxy(path: str, worker: int) -> Any:
    from daxproxy.core.config import Settings
    from daxproxy.service.runtime import build_proxy
    from daxproxy.service.upstream import UpstreamResponse
    from daxproxy.workers.channel import ChangeLink

    link = await ChangeLink.connect(path, worker)
    settings = Settings(upstream="http://127.0.0.1:1")
    return link, build_proxy(settings, FakeUpstream(UpstreamResponse), changes=link)


class _Recorder:
    """Stands in for the lag histogram: keeps every observation."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def observe(self, seconds: float) -> None:
        self.samples.append(seconds)


async def _writer(path: str, changes: int, interval: float) -> None:
    link, proxy = await _linked_proxy(path, 1)
    for n in range(changes):
        item = {**ITEM_1K, "pk": {"S": f"item-{n % 1000}"}}
        answer = await proxy.handle(_request("PutItem", {"TableName": "t", "Item": item}))
        assert answer.status == 200, answer.body
        await asyncio.sleep(interval)
    await link.close()


async def _reader(path: str, changes: int, busy: bool, hits_per_turn: int) -> None:
    link, proxy = await _linked_proxy(path, 2)
    recorder = proxy.metrics.change_lag = _Recorder()
    hit = _request("GetItem", {"TableName": "t", "Key": {"pk": {"S": "item-1"}}})
    await proxy.handle(hit)
    print("ready", flush=True)
    hits, started = 0, time.perf_counter()
    while len(recorder.samples) < changes:
        if busy:
            for _ in range(hits_per_turn):
                await proxy.handle(hit)  # a hit does not suspend: the loop is busy
            hits += hits_per_turn
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.01)
    rate = hits / (time.perf_counter() - started)
    print(json.dumps({"lag": recorder.samples, "hits_per_second": rate}), flush=True)
    await link.close()


def _child(role: str, path: str, args: argparse.Namespace, busy: bool) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.change_lag", "--role", role, "--path", path]
    command += ["--changes", str(args.changes), "--interval-ms", str(args.interval_ms)]
    command += ["--hits-per-turn", str(args.hits_per_turn), "--event-loop", args.event_loop]
    command += ["--busy"] if busy else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


async def _run(args: argparse.Namespace, busy: bool) -> dict[str, Any]:
    from daxproxy.workers.channel import ChangeHub

    with tempfile.TemporaryDirectory(prefix="daxproxy-lag-") as directory:
        path = os.path.join(directory, "changes")
        hub = ChangeHub(path)
        await hub.start()
        try:
            reader = _child("reader", path, args, busy)
            assert reader.stdout is not None
            assert (await asyncio.to_thread(reader.stdout.readline)).strip() == "ready"
            writer = _child("writer", path, args, busy)
            result: dict[str, Any] = json.loads(await asyncio.to_thread(reader.stdout.readline))
            await asyncio.to_thread(writer.wait)
            await asyncio.to_thread(reader.wait)
        finally:
            await hub.close()
    return result


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _report(label: str, result: dict[str, Any]) -> str:
    lag = sorted(result["lag"])
    cells = [label, str(len(lag))]
    cells += [f"{_percentile(lag, q) * 1e6:.0f}" for q in (0.5, 0.9, 0.99)]
    cells += [f"{lag[-1] * 1e6:.0f}", f"{statistics.fmean(lag) * 1e6:.0f}"]
    rate = result["hits_per_second"]
    cells.append(f"{rate:,.0f}" if rate else "-")
    return "| " + " | ".join(cells) + " |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--interval-ms", type=float, default=1.0)
    parser.add_argument("--hits-per-turn", type=int, default=50)
    parser.add_argument("--busy", action="store_true", help="only the busy reader")
    parser.add_argument("--idle", action="store_true", help="only the idle reader")
    parser.add_argument("--event-loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--role", choices=["writer", "reader"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "writer":
        _run_on(args.event_loop, _writer(args.path, args.changes, args.interval_ms / 1000))
        return 0
    if args.role == "reader":
        _run_on(args.event_loop, _reader(args.path, args.changes, args.busy, args.hits_per_turn))
        return 0
    print(f"event loop: {loop_factory(args.event_loop)[1]}")
    print("| reader | changes | p50 µs | p90 µs | p99 µs | max µs | mean µs | hits/s |")
    print("|---|---|---|---|---|---|---|---|")
    for busy in (False, True):
        if (busy and args.idle) or (not busy and args.busy):
            continue
        result = _run_on(args.event_loop, _run(args, busy))
        label = f"busy ({args.hits_per_turn} hits a turn)" if busy else "idle"
        print(_report(label, result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
