"""A GetItem hit's CPU through the edge, DAX against HTTP, in process: ``python -m
bench.inprocess_dax``.

Contract: builds the proxy as the server does (``runtime.build_proxy`` with its metrics,
an :class:`~daxproxy.edge.server.EdgeServer` serving DAX on the same port through a
:class:`~daxproxy.service.dax_calls.DaxService`), over :mod:`bench.inprocess`'s fake
upstream (a 1 KB item of mixed types, table ``t``), and opens two connections on fake
transports: one fed the bench's HTTP GetItem request (:func:`bench.workloads.
request_bytes`), one fed DAX's preamble and authorizeConnection, then getItem frames
(:mod:`bench.replay`'s bytes), handed to a :class:`~daxproxy.edge.dax_protocol.DaxProtocol`
by the HTTP side's first-byte test as a real connection is. After a warming read each
connection is fed its request over and over from a loop callback, as a socket's reads come
(no current task), each hit having to be answered inline, within the read (else an
error); the table gives CPU time per hit in microseconds
(``time.process_time``, the best of ``--repeats`` loops of ``--count`` hits), the reply's
size, and the DAX hit's cost against the HTTP one's. No sockets, no parsing by a client:
the server's own work per hit, from request bytes in to reply bytes out. Each reply is
checked (HTTP: 200 and ``x-daxproxy-cache: hit``; DAX: the success status and the same
bytes every time). ``--profile`` prints cProfile's top functions for each protocol instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from bench import inprocess, replay
from bench.workloads import request_bytes

KEY = "item-1"  # the key of inprocess.ITEM_1K


class FakeTransport:
    """Counts the replies written; keeps the last. Takes a protocol handed over to."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""
        self.protocol: Any = None
        self.end_turn: Any = lambda: None  # the edge's outbox written, as at a turn's end

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = bytes(data)

    def writelines(self, parts: Sequence[bytes]) -> None:
        self.write(b"".join(parts))

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8111) if name in ("sockname", "peername") else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def _edge() -> Any:
    from daxproxy.core.config import Settings
    from daxproxy.dax.attribute_lists import AttributeLists
    from daxproxy.edge.server import EdgeServer
    from daxproxy.service.dax_calls import DaxService
    from daxproxy.service.runtime import build_proxy
    from daxproxy.service.upstream import UpstreamResponse

    settings = Settings(upstream="http://127.0.0.1:1")
    proxy = build_proxy(settings, inprocess.FakeUpstream(UpstreamResponse))
    assert proxy.tables is not None
    dax = DaxService(proxy, proxy.tables, AttributeLists())
    return EdgeServer(proxy, settings, asyncio.get_running_loop(), dax=dax)


async def _answer(transport: FakeTransport, feed: Any, data: bytes) -> bytes:
    before = transport.writes
    feed(data)
    while transport.writes == before:
        await asyncio.sleep(0)
    return transport.last


async def connections() -> dict[str, tuple[Any, FakeTransport, bytes]]:
    """Each protocol's (feed, transport, request), warmed: its next read is a hit."""
    edge = await _edge()
    body = json.dumps({"TableName": "t", "Key": {"pk": {"S": KEY}}}, separators=(",", ":"))
    http_request = request_bytes("GetItem", body, "127.0.0.1:8111")
    dax_frame = replay.get_item_frame("t", KEY)
    made: dict[str, tuple[Any, FakeTransport, bytes]] = {}
    for name, opening, request in (
        ("HTTP", b"", http_request),
        ("DAX", replay.dax_opening(b"s" * 16), dax_frame),
    ):
        transport = FakeTransport()
        transport.end_turn = edge.outbox.flush
        protocol = edge.protocol()
        transport.protocol = protocol
        protocol.connection_made(transport)

        def feed(data: bytes, transport: FakeTransport = transport) -> None:
            transport.protocol.data_received(data)

        await _answer(transport, feed, opening + request)  # a miss: fills the cache
        made[name] = (feed, transport, request)
    return made


def _check(name: str, reply: bytes, first: bytes) -> None:
    if name == "HTTP":
        if not reply.startswith(b"HTTP/1.1 200") or b"x-daxproxy-cache: hit" not in reply:
            raise AssertionError(f"the HTTP hit answered {reply[:200]!r}")
    elif not reply.startswith(b"\x80") or reply != first:
        raise AssertionError(f"the DAX hit answered {reply[:200]!r}")


def _hits(feed: Any, transport: FakeTransport, request: bytes, count: int) -> float:
    """CPU seconds for ``count`` hits fed back to back (one turn of the loop); each must be
    answered inline."""
    before = transport.writes
    start = time.process_time()
    for _ in range(count):
        feed(request)
    transport.end_turn()
    spent = time.process_time() - start
    if transport.writes != before + count:
        raise AssertionError("a hit was not answered inline, from the read")
    return spent


async def _from_callback(work: Any) -> Any:
    """``work()`` run from a loop callback, as a protocol's reads are (no current task)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            done.set_result(work())
        except Exception as error:
            done.set_exception(error)

    loop.call_soon(run)
    return await done


async def measure(count: int, repeats: int) -> dict[str, tuple[float, int]]:
    """Per protocol: the best CPU µs per hit, and the reply's length."""
    results = {}
    for name, (feed, transport, request) in (await connections()).items():
        first = await _answer(transport, feed, request)
        best = float("inf")
        for _ in range(repeats):
            spent = await _from_callback(partial(_hits, feed, transport, request, count))
            best = min(best, spent / count)
            _check(name, transport.last, first)
        results[name] = (best * 1e6, len(first))
    return results


async def profile(count: int) -> None:
    import cProfile
    import pstats

    for name, (feed, transport, request) in (await connections()).items():
        profiler = cProfile.Profile()
        profiler.enable()
        await _from_callback(partial(_hits, feed, transport, request, count))
        profiler.disable()
        print(f"## {name} GetItem hit, {count:,} calls")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess_dax", description=__doc__)
    parser.add_argument("--count", type=int, default=50_000, help="hits per timed loop")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.profile:
        asyncio.run(profile(args.count))
        return 0
    results = asyncio.run(measure(args.count, args.repeats))
    http_us = results["HTTP"][0]
    print("| GetItem hit, 1 KB item | CPU µs per hit | Reply bytes | Against HTTP |")
    print("| --- | --- | --- | --- |")
    for name, (us, size) in results.items():
        print(f"| {name} | {us:.2f} | {size:,} | {us / http_us:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
