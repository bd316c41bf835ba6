"""The client edge's bounds: connections, header size, read and idle timeouts, parse errors.

:class:`EdgeRunner` is aiohttp's ``AppRunner`` serving each connection with
:class:`EdgeHandler`, aiohttp's HTTP/1.1 protocol with these additions:

- **Connections.** Past ``max_client_connections`` open connections (0: no cap) a new one
  is aborted as soon as it is accepted (after the TLS handshake, with TLS), before a byte
  is read, and counted (``on_refused``). Those under the cap are untouched.
- **Header size.** aiohttp's parser rejects a request line or a header field (name and
  value) longer than ``max_header_bytes``, and more than 128 header fields.
- **Read timeout.** From the first byte of a request, the client has
  ``client_read_timeout_millis`` to send all of it, headers and body. Headers still
  incomplete then: the proxy answers 408 ``RequestTimeoutException`` (when no earlier answer
  is being written) and closes the connection. Body incomplete: reading it raises
  :class:`RequestReadTimeout` in the handler, which the app answers with that 408, and the
  connection closes after it. Every SDK retries ``RequestTimeoutException``.
- **Idle timeout.** aiohttp's keep-alive timer closes a connection that has no request
  under way for ``client_idle_timeout_millis``, the first request of a new connection
  included. While a request is being received the read timeout applies instead.
- **Parse errors** (a malformed request line or header, a header over the limit, a broken
  chunked body) are answered 400 ``SerializationException`` in DynamoDB's JSON shape, never
  aiohttp's text page, and logged at DEBUG only: they are the client's mistake. So is an
  HTTP error aiohttp raises outside the app's error boundary (the 417 for an ``Expect``
  header other than ``100-continue``), with its own status. Any other error aiohttp has to
  answer itself is a 500 ``InternalServerError``, with no traceback on the wire.

Read for aiohttp 3.14: aiohttp has no request read deadline and its ``Server`` makes plain
``RequestHandler`` objects, so this module subclasses both and reads these of their
internals: ``Server._loop``, ``._kwargs`` and ``._connections``; ``RequestHandler._manager``,
``._messages``, ``._request_count``, ``._waiter``, ``._keepalive_handle``, ``._close`` and
``._force_close``. The edge tests fail should an upgrade rename them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from daxproxy.core import wire
from daxproxy.core.config import Settings
from daxproxy.core.errors import (
    DynamoDBError,
    InternalServerError,
    RequestTimeoutException,
    SerializationException,
)

log = logging.getLogger(__name__)

_REASONS = {400: "Bad Request", 408: "Request Timeout", 500: "Internal Server Error"}


class RequestReadTimeout(asyncio.TimeoutError):
    """The request body did not arrive within ``client_read_timeout_millis``.

    A TimeoutError so that aiohttp, draining the unread body after the answer, stops
    quietly and closes the connection.
    """


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_connections: int  # 0: no cap
    max_header_bytes: int
    read_timeout: float  # seconds
    idle_timeout: float  # seconds

    @classmethod
    def of(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_connections=settings.max_client_connections,
            max_header_bytes=settings.max_header_bytes,
            read_timeout=settings.client_read_timeout_millis / 1000,
            idle_timeout=settings.client_idle_timeout_millis / 1000,
        )

    def handler_options(self) -> dict[str, Any]:
        """aiohttp's own options for these bounds (``RequestHandler`` keywords)."""
        return {
            "keepalive_timeout": self.idle_timeout,
            "max_line_size": self.max_header_bytes,
            "max_field_size": self.max_header_bytes,
        }

    def read_timeout_error(self) -> RequestTimeoutException:
        return RequestTimeoutException(
            "The client did not send the whole request within "
            f"{self.read_timeout * 1000:g} ms (client_read_timeout_millis)"
        )


def _raw_response(error: DynamoDBError) -> bytes:
    """``error`` as a whole HTTP/1.1 answer that closes the connection."""
    answer = wire.error_response(error)
    head = [f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Error')}"]
    head += [f"{name}: {value}" for name, value in answer.headers]  # Content-Type included
    head += [f"Content-Length: {len(answer.body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode("latin-1") + answer.body


class EdgeServer(web.Server):
    """aiohttp's low-level server, making :class:`EdgeHandler` protocols."""

    def __init__(
        self,
        handler: Any,
        *,
        limits: EdgeLimits,
        on_refused: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.on_refused = on_refused

    def __call__(self) -> RequestHandler:
        return EdgeHandler(self, loop=self._loop, **self._kwargs)

    def is_full(self) -> bool:
        cap = self.limits.max_connections
        return cap > 0 and len(self._connections) >= cap


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` whose server is an :class:`EdgeServer` bounded by ``limits``."""

    def __init__(
        self,
        app: web.Application,
        limits: EdgeLimits,
        *,
        on_refused: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **limits.handler_options(), **kwargs)
        self._limits = limits
        self._on_refused = on_refused

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's start-up
        return EdgeServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self._limits,
            on_refused=self._on_refused,
            **plain._kwargs,
        )


class EdgeHandler(RequestHandler):
    """One client connection: aiohttp's protocol, with the cap and the read deadline."""

    __slots__ = ("_edge", "_read_timer", "_reading")

    def __init__(self, manager: EdgeServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._edge = manager
        self._read_timer: asyncio.TimerHandle | None = None
        # The body of the request being received; None while its headers are incomplete.
        self._reading: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._edge.is_full():
            self._manager = None  # never registered: connection_lost has nothing to undo
            cast(asyncio.Transport, transport).abort()
            log.debug("client connection refused: max_client_connections reached")
            if self._edge.on_refused is not None:
                self._edge.on_refused()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_read_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._check_received()  # a body may have been completed outside data_received
        if data and self._read_timer is None and not (self._force_close or self._close):
            # A request begins: the read deadline applies, the idle timer no longer does
            # (aiohttp re-arms it after the answer).
            self._read_timer = self._loop.call_later(
                self._edge.limits.read_timeout, self._read_timed_out
            )
            self._reading = None
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
                self._keepalive_handle = None
        parsed = self._request_count
        super().data_received(data)
        if self._read_timer is not None and self._request_count != parsed and self._messages:
            self._reading = self._messages[-1][1]  # the headers are in
        self._check_received()

    def _check_received(self) -> None:
        if self._reading is not None and self._reading.is_eof():
            self._stop_read_clock()

    def _stop_read_clock(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._reading = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        body, self._reading = self._reading, None
        if body is not None and body.is_eof():
            return  # completed after all
        if self.transport is None or self._force_close:
            return
        log.debug(
            "client read timeout: request incomplete after %g s", self._edge.limits.read_timeout
        )
        if body is not None:  # the handler reading it answers 408
            body.set_exception(RequestReadTimeout())
            return
        if self._waiter is not None and not self._waiter.done():  # nothing else is writing
            self.transport.write(_raw_response(self._edge.limits.read_timeout_error()))
        self.force_close()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # aiohttp's own plain-text error, raised outside the app's error boundary (such
            # as the 417 for an Expect header other than 100-continue): reshaped.
            answer = wire.error_response(_client_or_server(resp.status, resp.text or resp.reason))
            answer.status = resp.status
            resp = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        return await super().finish_response(request, resp, start_time)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """What aiohttp answers itself, in DynamoDB's error shape; the connection closes."""
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already being sent")
        error: DynamoDBError
        if status == 400:
            log.debug("unparsable request from %s: %s", request.remote, type(exc).__name__)
            if isinstance(exc, LineTooLong):
                error = SerializationException(
                    "A request line or header field is longer than "
                    f"{self._edge.limits.max_header_bytes} bytes (max_header_bytes)"
                )
            else:
                error = SerializationException(f"Malformed HTTP request: {message or exc}"[:512])
        else:
            log.error("fault while handling %s %s", request.method, request.path, exc_info=exc)
            error = InternalServerError("The proxy failed to handle the request")
        answer = wire.error_response(error)
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        response.force_close()
        return response


def _client_or_server(status: int, message: str) -> DynamoDBError:
    if status < 500:
        return SerializationException(message[:512])
    return InternalServerError("The proxy failed to handle the request")
