"""A write raced against the idle close of its keep-alive connection reaches the upstream
at most once, and exactly once when it was answered.

A client that reuses a pooled connection just as the proxy closes it for idleness sees the
connection drop and retries on a new one (boto3 and the JavaScript SDK do). That retry is
safe only if the dropped request never went upstream: the proxy closes a connection only
while no request is under way (``daxproxy.edge.protocol``), so bytes that arrive as it closes
are discarded unread. Here many raw connections, at a short idle timeout, each send a
PutItem at a different moment around the timeout (before it, across it, after the close),
and a forwarder in front of moto counts every PutItem by its key: answered means exactly one
upstream write, dropped means none; the client's retry then makes it exactly one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.config import Config

from tests.integration.counting import CountingForwarder
from tests.integration.harness import CountedStack, ProxyProcess, dynamodb_client, serving

IDLE_MILLIS = 200
TABLE = "keepalive"
RACES = 40  # connections, each sending its write at another moment around the idle close
# The raced writes go out from 0.6 to 1.4 idle timeouts after the previous answer: this
# schedules the race (the proxy's timer starts as it writes that answer), it bounds nothing.
EARLIEST, LATEST = 0.6, 1.4
WAIT_LIMIT = 15.0  # seconds: an answer or a close that never comes fails the test

pytestmark = pytest.mark.slow


class WriteCounter(CountingForwarder):
    """Counts each PutItem by the key it writes, as it reaches the upstream."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.writes: Counter[str] = Counter()

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        if request.headers.get("X-Amz-Target", "").endswith(".PutItem"):
            body = await request.read()  # aiohttp keeps it: the forward reads it again
            key = json.loads(body)["Item"]["id"]["S"]
            with self._lock:
                self.writes[key] += 1
        return await super()._forward(session, request)

    def written(self) -> Counter[str]:
        with self._lock:
            return Counter(self.writes)


class Stack(CountedStack):
    forwarder_class = WriteCounter

    @property
    def writes(self) -> WriteCounter:
        assert isinstance(self.forwarder, WriteCounter)
        return self.forwarder

    def setup(self) -> None:
        self.proxy = self.start_proxy("--client-idle-timeout-millis", str(IDLE_MILLIS))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


@pytest.fixture(scope="module")
def table(stack: Stack) -> str:
    client = dynamodb_client(stack.proxy.url)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.close()
    return TABLE


def put_request(port: int, key: str) -> bytes:
    body = json.dumps({"TableName": TABLE, "Item": {"id": {"S": key}}}).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "X-Amz-Target: DynamoDB_20120810.PutItem\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def send(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int | None:
    """The answer's status, or None when the connection closed before any answer byte."""
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        assert not exc.partial, f"an answer cut short: {exc.partial!r}"
        return None
    except ConnectionError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"
    )
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def race(port: int, key: str, delay: float | None) -> int | None:
    """On a fresh connection, a first PutItem (answered: the connection is now idle in the
    client's pool), then the raced PutItem ``delay`` seconds after that answer; with
    ``delay`` None, only once the proxy has closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await send(reader, writer, put_request(port, f"{key}-first")) == 200
        if delay is None:
            assert await asyncio.wait_for(reader.read(1), WAIT_LIMIT) == b""  # closed by the proxy
        else:
            await asyncio.sleep(delay)
        return await asyncio.wait_for(send(reader, writer, put_request(port, key)), WAIT_LIMIT)
    finally:
        await close(writer)


async def retry(port: int, key: str) -> int | None:
    """What the SDK does after a dropped connection: the same request on a new one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(send(reader, writer, put_request(port, key)), WAIT_LIMIT)
    finally:
        await close(writer)


async def test_a_write_raced_against_the_idle_close_reaches_the_upstream_at_most_once(
    stack: Stack, table: str
) -> None:
    port = stack.proxy.port
    idle = IDLE_MILLIS / 1000
    step = (LATEST - EARLIEST) / (RACES - 1)
    delays: dict[str, float | None] = {"at-once": 0.0, "after-close": None}
    delays |= {f"race-{i}": idle * (EARLIEST + i * step) for i in range(RACES)}
    statuses = dict(
        zip(
            delays,
            await asyncio.gather(*(race(port, key, delay) for key, delay in delays.items())),
            strict=True,
        )
    )
    assert set(statuses.values()) <= {200, None}, statuses
    # The two ends are certain: sent at once, answered; sent after the close, dropped.
    assert statuses["at-once"] == 200 and statuses["after-close"] is None, statuses

    dropped = [key for key, status in statuses.items() if status is None]
    for key in dropped:
        assert await retry(port, key) == 200
    # Stopping the proxy waits for whatever it still handles: nothing can reach the
    # upstream after this, so the counts below are final.
    assert stack.proxy.stop() == 0
    written = stack.writes.written()
    for key in delays:
        assert written[f"{key}-first"] == 1, key
        # Answered at once: one write. Dropped: none then, one with the client's retry.
        assert written[key] == 1, (key, statuses[key], written[key])
    assert sum(written.values()) == 2 * len(delays)


@pytest.fixture
def fresh_proxy(stack: Stack) -> Iterator[ProxyProcess]:
    """A proxy of its own at the short idle timeout (the other test stops the stack's)."""
    yield stack.start_proxy("--client-idle-timeout-millis", str(IDLE_MILLIS))


def test_boto3_reusing_its_pool_across_the_idle_timeout_writes_each_item_once(
    stack: Stack, table: str, fresh_proxy: ProxyProcess
) -> None:
    """boto3 with its usual retries, pausing around the idle timeout between writes, as
    the issue saw it: every write answered, and each reached the upstream exactly once."""
    client = dynamodb_client(fresh_proxy.url, Config(retries={"mode": "standard"}))
    idle = IDLE_MILLIS / 1000
    keys = [f"boto3-{i}" for i in range(12)]
    retried: list[Any] = []
    try:
        for i, key in enumerate(keys):
            answer = client.put_item(TableName=table, Item={"id": {"S": key}})
            retried.append(answer["ResponseMetadata"]["RetryAttempts"])
            time.sleep(idle * (0.8 + i * 0.04))  # around the timeout: schedules, bounds nothing
    finally:
        client.close()
    assert fresh_proxy.stop() == 0
    written = stack.writes.written()
    assert [written[key] for key in keys] == [1] * len(keys), (retried, written)
