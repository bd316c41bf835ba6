"""The aiohttp edge with a fake upstream: routes, limits, health and the error boundary."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from daxproxy.core.config import Settings
from daxproxy.edge.app import SERVER_OPTIONS, create_app
from daxproxy.service.proxy import Proxy
from daxproxy.service.upstream import UpstreamResponse
from tests.fakes import FakeUpstream, Sent

BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'
HEADERS = {
    "X-Amz-Target": "DynamoDB_20120810.GetItem",
    "Content-Type": "application/x-amz-json-1.0",
}

ClientFactory = Callable[..., contextlib.AbstractAsyncContextManager[TestClient]]


@pytest.fixture
def client() -> ClientFactory:
    @contextlib.asynccontextmanager
    async def start(upstream: FakeUpstream, **settings: int) -> AsyncIterator[TestClient]:
        config = Settings(**settings)  # type: ignore[arg-type]

        @contextlib.asynccontextmanager
        async def factory(_: Settings) -> AsyncIterator[Proxy]:
            yield Proxy(upstream, max_body_bytes=config.max_body_bytes)

        server = TestServer(create_app(config, factory), host="127.0.0.1")
        await server.start_server(**SERVER_OPTIONS)
        async with TestClient(server) as test_client:
            yield test_client

    return start


async def error_of(response: object) -> tuple[int, str]:
    body = await response.read()  # type: ignore[attr-defined]
    return response.status, str(orjson.loads(body)["__type"]).split("#")[1]  # type: ignore[attr-defined]


async def test_a_gzip_body_is_forwarded_as_sent(client: ClientFactory) -> None:
    upstream = FakeUpstream()
    compressed = gzip.compress(BODY)
    async with client(upstream) as c:
        response = await c.post(
            "/", data=compressed, headers={**HEADERS, "Content-Encoding": "gzip"}
        )
        assert response.status == 200
    assert upstream.sent[0].body == compressed


async def test_any_path_is_dynamodb(client: ClientFactory) -> None:
    upstream = FakeUpstream()
    async with client(upstream) as c:
        assert (await c.post("/some/prefix", data=BODY, headers=HEADERS)).status == 200
    assert len(upstream.sent) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_a_405_and_the_proxy_serves_on(
    client: ClientFactory, method: str
) -> None:
    async with client(FakeUpstream()) as c:
        response = await c.request(method, "/")
        assert await error_of(response) == (405, "MethodNotAllowedException")
        assert response.headers["Allow"] == "POST"
        assert response.headers["x-amz-crc32"]
        assert (await c.post("/", data=BODY, headers=HEADERS)).status == 200


async def test_a_body_over_the_limit_gets_a_413_and_the_proxy_serves_on(
    client: ClientFactory,
) -> None:
    upstream = FakeUpstream()
    async with client(upstream, max_body_bytes=4096) as c:
        response = await c.post("/", data=b"x" * 5000, headers=HEADERS)
        assert await error_of(response) == (413, "RequestEntityTooLargeException")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: found while reading
            for _ in range(5):
                yield b"x" * 1000

        response = await c.post("/", data=chunks(), headers=HEADERS)
        assert await error_of(response) == (413, "RequestEntityTooLargeException")
        assert (await c.post("/", data=BODY, headers=HEADERS)).status == 200
    assert [s.body for s in upstream.sent] == [BODY]


async def test_a_fault_in_the_proxy_is_a_500_without_a_traceback(client: ClientFactory) -> None:
    def explode(sent: Sent) -> UpstreamResponse:
        raise RuntimeError("secret detail")

    async with client(FakeUpstream(answer=explode)) as c:
        response = await c.post("/", data=BODY, headers=HEADERS)
        body = await response.read()
        assert await error_of(response) == (500, "InternalServerError")
        assert b"secret detail" not in body and b"Traceback" not in body
        assert response.headers["x-amz-crc32"]


@pytest.mark.parametrize(("ready", "status"), [(True, 200), (False, 503)])
async def test_health_and_readiness(client: ClientFactory, ready: bool, status: int) -> None:
    async with client(FakeUpstream(ready=ready)) as c:
        assert (await c.get("/healthz")).status == 200
        assert (await c.get("/readyz")).status == status
