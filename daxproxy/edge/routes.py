"""Routes: which handler answers a request, by its method and path.

``POST`` on any path is a DynamoDB request (DynamoDB ignores the path), answered by
:meth:`Proxy.answer`. ``GET /healthz`` answers while the process serves; ``GET /readyz``
only while the upstream answers; ``GET /metrics`` serves the proxy's Prometheus registry
(with the edge's count of client connections), or 404 when the proxy has no metrics. With
the ``admin`` setting, ``GET /admin/caches`` and ``POST /admin/invalidate`` serve
:class:`CacheAdmin`. In a worker process of several (``workers``), ``/metrics`` and
``/admin/caches`` answer for every worker: the worker asks the supervisor for the sums
(:mod:`daxproxy.workers.totals`), and answers 503 ``ServiceUnavailable`` if it cannot
(never a partial sum, which would make counters go backwards). ``HEAD`` is ``GET``
without the body. Any other method, and ``GET`` on ``/`` (or on a POST-only route), is a
405 ``MethodNotAllowedException`` with ``Allow: POST``; ``GET`` on any other path is a 404,
as DynamoDB answers it. A 405 is an edge refusal: the
protocol reports it to :meth:`Proxy.refused`, so the metrics and the request log count it;
a 404 is not a DynamoDB request and is not counted.

A handler takes the request and returns its answer, or a coroutine of it: a cache hit comes
back as its answer, and the protocol runs a coroutine's first step inline, so what does not
wait costs no task. The DynamoDB route also has a ``quick`` way (:meth:`Proxy.quick`),
when the proxy can answer any request so: a remembered GetItem hit's ready answer from the
request's target, encoding and body bytes, asked before any request is built; None sends
the request on to the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daxproxy.core import wire
from daxproxy.core.config import Settings
from daxproxy.core.errors import (
    DynamoDBError,
    MethodNotAllowedException,
    ServiceUnavailable,
    UnknownOperationException,
    ValidationException,
)
from daxproxy.edge import answers
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.workers.figures import CACHES, METRICS, ask

Answer = wire.WireResponse | Coroutine[Any, Any, wire.WireResponse]
Handler = Callable[[ClientRequest], Answer]
# X-Amz-Target, Content-Encoding and body as they came -> a ready answer, or None.
Quick = Callable[[bytes | None, bytes | None, bytes], wire.ReadyAnswer | None]

_JSON = [("Content-Type", "application/json")]
# How long a worker waits for the supervisor's sums (it asks every worker in turn).
TOTALS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Route:
    """How to answer one request: ``handler``, or the fixed ``error`` (with ``status``
    over the error's own); ``refusal``: an error counted as a refused DynamoDB request;
    ``takes_body``: the body is kept for the handler (else it is read and dropped);
    ``quick``: asked first, a ready answer instead of the handler's (None: ask the handler)."""

    handler: Handler | None = None
    quick: Quick | None = None
    error: DynamoDBError | None = None
    status: int | None = None
    refusal: bool = False
    takes_body: bool = True


def _json(document: object, status: int = 200) -> wire.WireResponse:
    return wire.WireResponse(status, orjson.dumps(document), list(_JSON))


class Router:
    """The routes of one proxy; ``connections`` counts the edge's open client connections;
    ``totals``: in a worker process, the supervisor's socket of the workers' sums."""

    def __init__(
        self,
        proxy: Proxy,
        settings: Settings,
        connections: Callable[[], int],
        totals: str | None = None,
    ) -> None:
        self.proxy = proxy
        self._connections = connections
        self._totals = totals
        self.dynamodb = Route(proxy.answer, quick=proxy.quick if proxy.answers_quick else None)
        metrics = self._metrics if totals is None or proxy.metrics is None else self._all_metrics
        gets: dict[bytes, Route] = {
            b"/healthz": Route(self._healthz, takes_body=False),
            b"/readyz": Route(self._readyz, takes_body=False),
            b"/metrics": Route(metrics, takes_body=False),
        }
        posts: dict[bytes, Route] = {}
        if settings.admin and proxy.admin is not None:
            caches = self._admin_caches if totals is None else self._all_caches
            gets[b"/admin/caches"] = Route(caches, takes_body=False)
            posts[b"/admin/invalidate"] = Route(self._admin_invalidate)
        self._gets = gets
        self._posts = posts

    def route(self, method: bytes, url: bytes) -> Route:
        """The route of a request line's method and URL (its query string ignored)."""
        if method == b"POST":
            if self._posts:
                route = self._posts.get(url.partition(b"?")[0])
                if route is not None:
                    return route
            return self.dynamodb
        path = url.partition(b"?")[0]
        if method in (b"GET", b"HEAD"):
            route = self._gets.get(path)
            if route is not None:
                return route
            if path != b"/" and path not in self._posts:
                name = path.decode("latin-1")
                return Route(
                    error=UnknownOperationException(f"No route for GET {name[:200]}"),
                    status=404,
                    takes_body=False,
                )
        return Route(
            error=MethodNotAllowedException(
                f"{method.decode('latin-1')} is not allowed on {path.decode('latin-1')[:200]}; "
                "DynamoDB requests are POST"
            ),
            refusal=True,
            takes_body=False,
        )

    def refused(self, target: str | None, answer: wire.WireResponse, seconds: float) -> None:
        self.proxy.refused(target, answer, seconds)

    # Handlers ---------------------------------------------------------------------------

    def _healthz(self, request: ClientRequest) -> wire.WireResponse:
        return _json({"status": "ok"})

    async def _readyz(self, request: ClientRequest) -> wire.WireResponse:
        ready = await self.proxy.upstream.ping()
        return _json(
            {"status": "ready" if ready else "upstream unavailable"}, 200 if ready else 503
        )

    def _metrics(self, request: ClientRequest) -> wire.WireResponse:
        metrics = self.proxy.metrics
        if metrics is None:
            return answers.error(UnknownOperationException("No route for GET /metrics"), 404)
        metrics.set_client_connections(self._connections())
        return wire.WireResponse(
            200, generate_latest(metrics.registry), [("Content-Type", CONTENT_TYPE_LATEST)]
        )

    async def _all_metrics(self, request: ClientRequest) -> wire.WireResponse:
        body = await self._ask_totals(METRICS)
        if body is None:
            return _no_totals()
        return wire.WireResponse(200, body, [("Content-Type", CONTENT_TYPE_LATEST)])

    async def _all_caches(self, request: ClientRequest) -> wire.WireResponse:
        body = await self._ask_totals(CACHES)
        if body is None:
            return _no_totals()
        return wire.WireResponse(200, body, list(_JSON))

    async def _ask_totals(self, what: str) -> bytes | None:
        assert self._totals is not None
        try:
            return await ask(self._totals, what, TOTALS_TIMEOUT)
        except (OSError, TimeoutError):
            return None

    def _admin_caches(self, request: ClientRequest) -> wire.WireResponse:
        assert self.proxy.admin is not None
        return _json(self.proxy.admin.stats())

    async def _admin_invalidate(self, request: ClientRequest) -> wire.WireResponse:
        assert self.proxy.admin is not None
        try:
            payload = orjson.loads(request.body)
            done = await self.proxy.admin.invalidate(payload)
        except orjson.JSONDecodeError:
            return answers.error(ValidationException("the body is not JSON"))
        except DynamoDBError as error:
            return answers.error(error)
        return _json(done)


def _no_totals() -> wire.WireResponse:
    return answers.error(ServiceUnavailable("The workers' figures could not be gathered"))
