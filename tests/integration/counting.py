"""A counting, fault-injecting HTTP forwarder to put between the proxy and moto.

The proxy's upstream is this forwarder; it forwards each request to moto unchanged and
counts them by operation, so a test can prove how many upstream calls the proxy made, and
keeps the last request of each operation as it arrived (headers and body bytes). It
can also hold an operation back for a while (to make misses overlap) or fail it with a 500
(to show what the proxy does when a write may have happened). It runs on its own event loop
in a thread, so synchronous SDK clients can drive the proxy from the test itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from daxproxy.service.embedded import free_port


def run_to_the_end(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on ``loop`` (a thread's own), then drain the loop before closing it, as
    :func:`asyncio.run` does: cancel and await what still runs, finish async generators and
    the executor, and give closed transports the loop turn in which they close their
    sockets. A loop closed straight after ``run_until_complete`` leaves those sockets to
    the garbage collector, which warns "unclosed transport" under some later test."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.run_until_complete(asyncio.sleep(0))  # the close callbacks just queued
        finally:
            asyncio.set_event_loop(None)
            loop.close()


# Headers of moto's answer a forwarder does not pass on: its own server sets them again.
DROPPED_ANSWER_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "date", "server"}
)


def upstream_headers(request: web.Request) -> dict[str, str]:
    """The headers a forwarder sends upstream: the request's, but for Host and length."""
    return {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}


async def serve_posts(
    port: int,
    handle: Callable[[aiohttp.ClientSession, web.Request], Awaitable[web.StreamResponse]],
    ready: threading.Event,
    stop: asyncio.Event,
    *,
    connections: int = 100,  # aiohttp's default
) -> None:
    """Answer every POST to 127.0.0.1:``port`` with ``handle(session, request)``, where
    ``session`` is an aiohttp client for the upstream (``connections`` at once at the most);
    set ``ready`` once it listens, and serve until ``stop`` is set."""
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        app = web.Application(client_max_size=64 * 1024 * 1024)

        async def handle_one(request: web.Request) -> web.StreamResponse:
            return await handle(session, request)

        app.router.add_post("/{tail:.*}", handle_one)
        runner = web.AppRunner(app, auto_decompress=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()


def internal_error() -> web.Response:
    """DynamoDB's 500 InternalServerError."""
    return web.Response(
        status=500,
        body=b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError",'
        b'"message":"Internal server error"}',
        content_type="application/x-amz-json-1.0",
    )


HOLD_LIMIT = 30.0  # seconds: a gate never set lets its requests go after this, not never


@dataclass
class Faults:
    delay: dict[str, float] = field(default_factory=dict)  # operation -> seconds
    fail_next: Counter[str] = field(default_factory=Counter)  # operation -> how many 500s
    apply_then_fail: bool = False  # forward a failing request first: "it may have happened"
    # BatchGetItem: report the last N keys of each table as unprocessed, as DynamoDB does
    # when it runs out of capacity or answer size.
    unprocess_batch_keys: int = 0
    # operation -> a gate: its requests are held (counted, not yet forwarded) until the
    # test sets it, so a test can make requests overlap by waiting for them, not by a delay.
    hold: dict[str, threading.Event] = field(default_factory=dict)


class CountingForwarder:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/") + "/"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.counts: Counter[str] = Counter()
        # operation -> the headers and body of its last request, as they reached us
        self.received: dict[str, tuple[dict[str, str], bytes]] = {}
        self.faults = Faults()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CountingForwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def count(self, operation: str) -> int:
        with self._lock:
            return self.counts[operation]

    def last(self, operation: str) -> tuple[dict[str, str], bytes]:
        """The headers and body of the last ``operation`` request the proxy sent us."""
        with self._lock:
            return self.received[operation]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.received.clear()
            self.faults = Faults()

    def _run(self) -> None:
        run_to_the_end(self._loop, self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await serve_posts(self.port, self._forward, self._ready, self._stop)

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        body = await request.read()
        with self._lock:
            self.counts[operation] += 1
            self.received[operation] = (dict(request.headers), body)
            delay = self.faults.delay.get(operation, 0.0)
            gate = self.faults.hold.get(operation)
            fail = self.faults.fail_next[operation] > 0
            if fail:
                self.faults.fail_next[operation] -= 1
        if delay:
            await asyncio.sleep(delay)
        if gate is not None:
            deadline = asyncio.get_running_loop().time() + HOLD_LIMIT
            while not gate.is_set() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
        if fail and not self.faults.apply_then_fail:
            return internal_error()
        headers = upstream_headers(request)
        async with session.post(self.upstream, data=body, headers=headers) as answer:
            payload = await answer.read()
            if fail:
                return internal_error()
            dropped = set(DROPPED_ANSWER_HEADERS)
            if operation == "BatchGetItem" and self.faults.unprocess_batch_keys:
                payload = _unprocess(body, payload, self.faults.unprocess_batch_keys)
                dropped.add("x-amz-crc32")  # of moto's body, not of this one
            out = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
            return web.Response(status=answer.status, body=payload, headers=out)


def _unprocess(request: bytes, answer: bytes, count: int) -> bytes:
    """Move the last ``count`` requested keys of each table to UnprocessedKeys."""
    asked = json.loads(request)["RequestItems"]
    body = json.loads(answer)
    for table, entry in asked.items():
        left = entry["Keys"][-count:]
        names = set().union(*(key.keys() for key in left)) if left else set()
        found = body.get("Responses", {}).get(table, [])
        body["Responses"][table] = [
            item for item in found if {n: item.get(n) for n in names} not in left
        ]
        body.setdefault("UnprocessedKeys", {})[table] = {**entry, "Keys": left}
    return json.dumps(body).encode()
