"""Each worker's figures over its Unix socket, and the routes that answer for all workers:
with the supervisor's sums, or a 503, never one worker's figures passed off as the whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from daxproxy.core.config import Settings
from daxproxy.edge.routes import Router
from daxproxy.service.proxy import ClientRequest
from daxproxy.service.runtime import build_proxy
from daxproxy.workers.figures import CACHES, METRICS, FigureServer, ask, worker_answers
from tests.fakes import FakeUpstream

SETTINGS = Settings(admin=True)
GET = ClientRequest([], b"", None)


async def answer_of(router: Router, path: bytes) -> Any:
    route = router.route(b"GET", path)
    assert route.handler is not None
    return await route.handler(GET)  # type: ignore[misc]


async def test_a_worker_gives_its_metric_families_and_cache_figures(tmp_path: Path) -> None:
    proxy = build_proxy(SETTINGS, FakeUpstream())
    server = FigureServer(str(tmp_path / "worker-1.sock"), worker_answers(proxy, lambda: 3))
    await server.start()
    try:
        families = orjson.loads(await ask(server.path, METRICS, 5))
        connections = next(f for f in families if f[0] == "daxproxy_client_connections")
        assert connections[1] == "gauge" and connections[3] == [
            ["daxproxy_client_connections", {}, 3]
        ]
        assert orjson.loads(await ask(server.path, CACHES, 5)) == proxy.admin.stats()  # type: ignore[union-attr]
        with pytest.raises(OSError):  # a question it has no answer to: no answer at all
            await ask(server.path, "secrets", 5)
    finally:
        await server.close()
    assert not Path(server.path).exists()


async def test_a_worker_answers_metrics_and_caches_with_the_supervisors_sums(
    tmp_path: Path,
) -> None:
    totals = str(tmp_path / "totals.sock")
    router = Router(build_proxy(SETTINGS, FakeUpstream()), SETTINGS, lambda: 0, totals)

    async def sums(what: str) -> bytes | None:
        return {METRICS: b"# all workers\n", CACHES: b'{"workers":2}'}.get(what)

    server = FigureServer(totals, sums)
    await server.start()
    try:
        metrics = await answer_of(router, b"/metrics")
        assert (metrics.status, metrics.body) == (200, b"# all workers\n")
        assert dict(metrics.headers)["Content-Type"].startswith("text/plain")
        caches = await answer_of(router, b"/admin/caches")
        assert (caches.status, caches.body) == (200, b'{"workers":2}')
    finally:
        await server.close()


async def test_without_the_supervisors_sums_a_worker_answers_503_not_its_own(
    tmp_path: Path,
) -> None:
    router = Router(
        build_proxy(SETTINGS, FakeUpstream()), SETTINGS, lambda: 0, str(tmp_path / "gone.sock")
    )
    for path in (b"/metrics", b"/admin/caches"):
        answer = await answer_of(router, path)
        assert answer.status == 503
        assert orjson.loads(answer.body)["__type"].endswith("ServiceUnavailable")


async def test_a_single_process_serves_its_own_figures() -> None:
    router = Router(build_proxy(SETTINGS, FakeUpstream()), SETTINGS, lambda: 0)
    metrics = router.route(b"GET", b"/metrics")
    assert metrics.handler is not None
    answer = metrics.handler(GET)
    assert not hasattr(answer, "__await__") and answer.status == 200
