"""Requests the edge answers itself, before the proxy, count in the metrics as the others."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestClient, TestServer

from daxproxy.core.config import Settings
from daxproxy.edge.app import SERVER_OPTIONS, create_app
from daxproxy.service.metrics import Metrics
from daxproxy.service.proxy import Proxy
from tests.fakes import FakeUpstream

HEADERS = {"X-Amz-Target": "DynamoDB_20120810.GetItem"}


async def test_405_413_and_unreadable_bodies_are_counted_as_client_errors() -> None:
    metrics = Metrics()
    settings = Settings(max_body_bytes=4096)

    @contextlib.asynccontextmanager
    async def factory(_: Settings) -> AsyncIterator[Proxy]:
        yield Proxy(FakeUpstream(), max_body_bytes=4096, metrics=metrics)

    server = TestServer(create_app(settings, factory), host="127.0.0.1")
    await server.start_server(**SERVER_OPTIONS)
    async with TestClient(server) as client:
        assert (await client.get("/")).status == 405
        assert (await client.post("/", data=b"x" * 5000, headers=HEADERS)).status == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: found while reading
            for _ in range(5):
                yield b"x" * 1000

        assert (await client.post("/", data=chunks(), headers=HEADERS)).status == 413
    assert metrics.errors == {("Unknown", "client"): 1, ("GetItem", "client"): 2}
    assert sum(h.count for h in metrics.durations.values()) == 3
