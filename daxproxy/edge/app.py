"""The aiohttp application: routes, the error boundary, health.

``POST`` on any path is a DynamoDB request (DynamoDB ignores the path); any other method is
a 405 in DynamoDB's error shape, with ``Allow: POST``. ``GET /healthz``
answers while the process serves; ``GET /readyz`` only while the upstream answers. The
middleware is the one place where an unexpected exception becomes a response: a 500
``InternalServerError`` with no traceback on the wire. DynamoDB requests it refuses before
the proxy sees them (405, 413, a body too slow or unreadable: 408, 400) are still reported
to the proxy's observers (:meth:`Proxy.refused`), so the metrics and the request log count
them. With the ``admin`` setting,
``/admin/caches`` and ``/admin/invalidate`` serve :class:`CacheAdmin`. ``GET /metrics``
serves the proxy's Prometheus registry; it is not a DynamoDB request and is not counted as
one. With the ``log_requests`` setting, the request log observes the proxy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daxproxy.core import wire
from daxproxy.core.config import Settings
from daxproxy.core.errors import (
    DynamoDBError,
    InternalServerError,
    MethodNotAllowedException,
    RequestEntityTooLargeException,
    SerializationException,
    UnknownOperationException,
    ValidationException,
)
from daxproxy.edge.limits import EdgeLimits, RequestReadTimeout
from daxproxy.edge.logs import request_log
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import open_proxy

log = logging.getLogger(__name__)

# Options for the AppRunner that serves the app. A compressed request body is forwarded as
# sent, so aiohttp must not decompress it; the proxy decodes its own copy.
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False, "access_log": None}

PROXY = web.AppKey("proxy", Proxy)
SETTINGS = web.AppKey("settings", Settings)

ProxyFactory = Callable[[Settings], AbstractAsyncContextManager[Proxy]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _respond(answer: wire.WireResponse) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


def _error(error: DynamoDBError) -> web.Response:
    return _respond(wire.error_response(error))


def _refused(request: web.Request, error: DynamoDBError, started: float) -> web.Response:
    """A DynamoDB request the edge answers itself: counted as the proxy's answers are."""
    answer = wire.error_response(error)
    proxy = request.app.get(PROXY)
    if proxy is not None:
        seconds = time.perf_counter() - started
        proxy.refused(request.headers.get("X-Amz-Target"), answer, seconds)
    return _respond(answer)


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        return _refused(
            request,
            RequestEntityTooLargeException(f"Request body exceeds the limit of {limit} bytes"),
            started,
        )
    except web.HTTPException as exc:  # the router's 404 and 405
        if exc.status == 405:
            return _refused(
                request,
                MethodNotAllowedException(
                    f"{request.method} is not allowed on {request.path}; DynamoDB requests are POST"
                ),
                started,
            )
        error = UnknownOperationException(f"No route for {request.method} {request.path}")
        response = wire.error_response(error)
        response.status = exc.status
        return _respond(response)
    except (RequestReadTimeout, web.RequestPayloadError) as exc:  # see edge/limits.py
        if isinstance(exc, RequestReadTimeout):
            fault: DynamoDBError = EdgeLimits.of(request.app[SETTINGS]).read_timeout_error()
        else:  # a body aiohttp could not read, such as broken chunked encoding
            fault = SerializationException(f"Malformed request body: {exc}"[:512])
        answer = _refused(request, fault, started)
        answer.force_close()  # the rest of the body, if any, is not read
        return answer
    except Exception:
        log.exception("fault while handling %s %s", request.method, request.path)
        return _error(InternalServerError("The proxy failed to handle the request"))


async def dynamodb(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.read()
    proxy = request.app[PROXY]
    headers = request.headers
    client = ClientRequest(
        headers.items(),
        body,
        headers.get("X-Amz-Target"),
        headers.get("Content-Encoding"),
        request.raw_path,
    )
    return _respond(await proxy.handle(client))


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"status": "ok"}), content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    ready = await request.app[PROXY].upstream.ping()
    status = "ready" if ready else "upstream unavailable"
    return web.Response(
        status=200 if ready else 503,
        body=orjson.dumps({"status": status}),
        content_type="application/json",
    )


async def metrics(request: web.Request) -> web.Response:
    proxy_metrics = request.app[PROXY].metrics
    if proxy_metrics is None:
        raise web.HTTPNotFound()
    proxy_metrics.set_client_connections(_client_connections(request))
    return web.Response(
        body=generate_latest(proxy_metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def _client_connections(request: web.Request) -> int | None:
    """The open connections of the server this request came through, scraper's included.

    aiohttp's low-level server keeps them (``web.Server.connections``), but neither the app
    nor a request names its server in public: each connection's handler holds it as
    ``_manager``. Reading it at scrape time costs the hot path nothing; should aiohttp rename
    it, the gauge goes empty rather than wrong.
    """
    server = getattr(request.protocol, "_manager", None)
    connections = getattr(server, "connections", None)
    return len(connections) if isinstance(connections, list) else None


async def admin_caches(request: web.Request) -> web.Response:
    admin = request.app[PROXY].admin
    assert admin is not None
    return web.Response(body=orjson.dumps(admin.stats()), content_type="application/json")


async def admin_invalidate(request: web.Request) -> web.Response:
    admin = request.app[PROXY].admin
    assert admin is not None
    try:
        payload = orjson.loads(await request.read())
        done = await admin.invalidate(payload)
    except orjson.JSONDecodeError:
        return _error(ValidationException("the body is not JSON"))
    except DynamoDBError as error:
        return _error(error)
    return web.Response(body=orjson.dumps(done), content_type="application/json")


def create_app(settings: Settings, proxy_factory: ProxyFactory = open_proxy) -> web.Application:
    """The application; the proxy (and its backend) opens on start-up and closes on clean-up."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_boundary])
    app[SETTINGS] = settings

    async def proxy_context(app: web.Application) -> AsyncIterator[None]:
        async with proxy_factory(settings) as proxy:
            requests = request_log(settings)
            if requests is not None:
                proxy.add_observer(requests)
            app[PROXY] = proxy
            yield

    app.cleanup_ctx.append(proxy_context)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if settings.admin:
        app.router.add_get("/admin/caches", admin_caches)
        app.router.add_post("/admin/invalidate", admin_invalidate)
    app.router.add_post("/{path:.*}", dynamodb)
    return app
