"""The request handler: one client request in, one complete response out.

It knows nothing of aiohttp's server: the edge hands it a :class:`ClientRequest` and writes
back the :class:`WireResponse`. It checks what DynamoDB itself checks before routing (the
body decodes to a JSON object, the target names a service), then gives the call to the
item or query cache when one is configured and the operation is one it serves or must see,
and
otherwise forwards it unchanged and relays the upstream's answer unchanged. Every failure
becomes a DynamoDB-shaped error here, so nothing below the edge puts a traceback on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from daxproxy.core import operations, wire
from daxproxy.core.errors import DynamoDBError, SerializationException
from daxproxy.core.operations import Kind
from daxproxy.core.wire import Headers, WireResponse
from daxproxy.service.admin import CacheAdmin
from daxproxy.service.calls import Call, forward, relay
from daxproxy.service.item_reads import ItemReads
from daxproxy.service.item_writes import ItemWrites
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)

Handler = Callable[[Call], Awaitable[WireResponse]]
# The cache reads request shapes of the current API version only.
_CACHED_PREFIX = "DynamoDB_20120810"


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A client's POST as it arrived: its headers and the body bytes as sent, with the two
    headers the proxy reads picked out by the edge (whose header map finds them fastest)."""

    headers: Headers
    body: bytes
    target: str | None
    content_encoding: str | None = None


class Proxy:
    def __init__(
        self,
        upstream: Upstream,
        *,
        max_body_bytes: int,
        item_reads: ItemReads | None = None,
        item_writes: ItemWrites | None = None,
        queries: QueryCache | None = None,
        admin: CacheAdmin | None = None,
    ) -> None:
        self.upstream = upstream
        self.admin = admin
        self._max_body_bytes = max_body_bytes
        self._handlers: dict[Kind, Handler] = {}
        if item_reads is not None:
            self._handlers[Kind.ITEM_READ] = item_reads.get_item
            self._handlers[Kind.BATCH_READ] = item_reads.batch_get_item
        if item_writes is not None:
            for kind in (Kind.ITEM_WRITE, Kind.BATCH_WRITE, Kind.TRANSACT_WRITE):
                self._handlers[kind] = item_writes.write
            self._handlers[Kind.TABLE_CHANGE] = item_writes.table_change
            self._handlers[Kind.PARTIQL] = item_writes.statement
        if queries is not None:
            self._handlers[Kind.QUERY] = queries.read
            self._handlers[Kind.SCAN] = queries.read

    async def handle(self, request: ClientRequest) -> WireResponse:
        try:
            return await self._handle(request)
        except DynamoDBError as error:
            return wire.error_response(error)

    async def _handle(self, request: ClientRequest) -> WireResponse:
        # DynamoDB reads the body before it routes: a body that is not JSON is a
        # SerializationException whatever the target says (dynalite's index.js mirrors this).
        decoded = wire.decode_content(request.body, request.content_encoding, self._max_body_bytes)
        empty = not decoded.strip()
        payload = {} if empty else wire.parse_json_object(decoded)
        target = wire.parse_target(request.target)
        if empty:
            raise SerializationException("Request body is empty; expected a JSON object")
        operation = operations.lookup(target)
        call = Call(target, operation, payload, request.body, request.headers)
        handler = self._handlers.get(operation.kind) if target.prefix == _CACHED_PREFIX else None
        if handler is not None:
            return await handler(call)
        return relay(await forward(self.upstream, call))
