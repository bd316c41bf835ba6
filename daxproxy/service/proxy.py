"""The request handler: one client request in, one complete response out.

It knows nothing of aiohttp's server: the edge hands it a :class:`ClientRequest` and writes
back the :class:`WireResponse`. It checks what DynamoDB itself checks before routing (the
body decodes to a JSON object, the target names a service), then forwards the request
unchanged and relays the upstream's answer unchanged. Every failure becomes a
DynamoDB-shaped error here, so nothing below the edge can put a traceback on the wire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from daxproxy.core import operations, wire
from daxproxy.core.errors import DynamoDBError, SerializationException
from daxproxy.core.wire import Headers, WireResponse
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A client's POST as it arrived: headers and the body bytes as sent."""

    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


class Proxy:
    def __init__(self, upstream: Upstream, *, max_body_bytes: int) -> None:
        self.upstream = upstream
        self._max_body_bytes = max_body_bytes

    async def handle(self, request: ClientRequest) -> WireResponse:
        try:
            return await self._handle(request)
        except DynamoDBError as error:
            return wire.error_response(error)

    async def _handle(self, request: ClientRequest) -> WireResponse:
        # DynamoDB reads the body before it routes: a body that is not JSON is a
        # SerializationException whatever the target says (dynalite's index.js mirrors this).
        decoded = wire.decode_content(
            request.body, request.header("Content-Encoding"), self._max_body_bytes
        )
        empty = not decoded.strip()
        if not empty:
            wire.parse_json_object(decoded)
        target = wire.parse_target(request.header("X-Amz-Target"))
        if empty:
            raise SerializationException("Request body is empty; expected a JSON object")
        operation = operations.lookup(target)
        answer = await self.upstream.send(
            target,
            request.body,
            wire.upstream_request_headers(request.headers),
            retry_safe=operation.read_only,
        )
        return wire.relay_response(answer.status, answer.headers, answer.body)
