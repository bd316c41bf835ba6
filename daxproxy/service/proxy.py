"""The request handler: one client request in, one complete response out.

It knows nothing of aiohttp's server: the edge hands it a :class:`ClientRequest` and writes
back the :class:`WireResponse`. It checks what DynamoDB itself checks before routing (the
body decodes to a JSON object, the target names a service), then gives the call to the
item or query cache when one is configured and the operation is one it serves or must see,
and otherwise forwards it unchanged and relays the upstream's answer unchanged. Every failure
becomes a DynamoDB-shaped error here, so nothing below the edge puts a traceback on the wire.
With ``max_in_flight``, a request that arrives while that many are being handled is shed at
once with a ThrottlingException (400), which every SDK retries with backoff, so a slow
upstream cannot queue requests without bound. With ``access`` (the ``auth_file`` setting),
each call's SigV4 signature and its key's grant are checked once the body and target are
read and before dispatch, so a refused request reaches neither a cache nor the upstream; a
DAX call (one whose ``key_id`` is set) has only its key's grant checked, its connection's
authorizeConnection having proved the key.
A ResourceNotFoundException or ValidationException for a request naming a table makes the
table registry look the table up again (:meth:`TableRegistry.suspect`): it may have been
deleted or re-created behind the proxy's back.

After each request every observer hears its :class:`~daxproxy.service.observe.Outcome`
(built only when there are observers besides the metrics);
:class:`~daxproxy.service.metrics.Metrics`, when given, hears the same facts by a direct
call (:meth:`Metrics.record`, no Outcome), and the edge serves its registry.

:meth:`Proxy.answer` answers a GetItem cache hit without a coroutine, Task or Future (and
the edge writes it at once); anything that waits comes back as a coroutine for the caller
to run. A GetItem body the item reads remember (:meth:`BodyMemo.remembered`) is answered
before it is parsed, unless ``access`` is set: the check reads the parsed call. The route
of each known ``X-Amz-Target`` (its target, operation and handler) is looked up once.

:meth:`Proxy.quick` is the edge's narrow way to that hit before any request is built: an
HTTP request's target, ``Content-Encoding`` and body bytes in, the hit as a
:class:`~daxproxy.core.wire.ReadyAnswer` (:meth:`BodyMemo.ready`) out, under the same
guards as :meth:`answer`'s remembered path and observed as it is; None: not such a hit,
nothing counted or changed, and the edge hands the request to :meth:`answer`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar

from daxproxy.core import operations, wire
from daxproxy.core.access import Access
from daxproxy.core.errors import DynamoDBError, SerializationException, ThrottlingException
from daxproxy.core.operations import Kind, Operation
from daxproxy.core.wire import Headers, ReadyAnswer, Target, WireResponse
from daxproxy.service.admin import CacheAdmin
from daxproxy.service.calls import BYPASS, HIT, Call, forward, relay
from daxproxy.service.coherence import Coherence
from daxproxy.service.item_reads import ItemReads
from daxproxy.service.item_writes import ItemWrites
from daxproxy.service.metrics import Metrics
from daxproxy.service.observe import (
    HTTP,
    Observer,
    Outcome,
    cache_of,
    error_type_of,
    operation_name,
    operation_of_target,
    table_of,
)
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.streams import StreamFollower
from daxproxy.service.tables import TableRegistry
from daxproxy.service.upstream import Upstream

log = logging.getLogger(__name__)

Handler = Callable[[Call], Awaitable[WireResponse]]
# A target's route: the parsed target, its operation, the cache's handler (None: forward),
# and the label of a forwarded answer.
_Route = tuple[Target, Operation, Handler | None, str | None]
# The cache reads request shapes of the current API version only.
_CACHED_PREFIX = "DynamoDB_20120810"
# The reads whose every answer says what the cache did (x-daxproxy-cache).
_CACHE_READS = frozenset({Kind.ITEM_READ, Kind.BATCH_READ, Kind.QUERY, Kind.SCAN})
# Errors that can mean a table changed behind the proxy's back.
_SUSPICIOUS = frozenset({"ResourceNotFoundException", "ValidationException"})
# The answer to a request past the cap on requests in flight: DynamoDB's own words.
_SHED_MESSAGE = "Rate of requests exceeds the allowed throughput."


# The target whose cache hits may be answered from a remembered body.
_GET_ITEM = "GetItem"
_GET_ITEM_TARGET = f"{_CACHED_PREFIX}.{_GET_ITEM}"
_GET_ITEM_TARGET_BYTES = _GET_ITEM_TARGET.encode()

# Routes remembered, by X-Amz-Target as sent (known operations only, so this bounds it).
_MAX_ROUTES = 1024


class ClientRequest:
    """A client's POST as it arrived: its headers and the body bytes as sent, with the two
    headers the proxy reads picked out by the edge (whose header map finds them fastest).
    ``raw_path``: the path and query string as sent (percent-encoded), which a signature
    covers. A plain slotted class: one per request, and a frozen dataclass costs four times
    as much to build."""

    __slots__ = ("body", "content_encoding", "headers", "raw_path", "target")

    # The label of its metrics and request log line: "http", or "dax" for a DAX call
    # (:class:`daxproxy.service.dax_calls.DaxRequest`). A class attribute, as key_id.
    protocol: ClassVar[str] = HTTP

    # The access key a DAX connection's authorizeConnection proved, for a DAX call
    # (:class:`daxproxy.service.dax_calls.DaxRequest` sets it); None: an HTTP request,
    # whose own signature is checked. A class attribute, so HTTP requests pay nothing.
    key_id: str | None = None

    def __init__(
        self,
        headers: Headers,
        body: bytes,
        target: str | None,
        content_encoding: str | None = None,
        raw_path: str = "/",
    ) -> None:
        self.headers = headers
        self.body = body
        self.target = target
        self.content_encoding = content_encoding
        self.raw_path = raw_path

    def __repr__(self) -> str:
        return f"ClientRequest(target={self.target!r}, {len(self.body)} bytes)"


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
        observers: Sequence[Observer] = (),
        metrics: Metrics | None = None,
        max_in_flight: int = 0,
        access: Access | None = None,
        tables: TableRegistry | None = None,
    ) -> None:
        self.upstream = upstream
        self._tables = tables
        # The stream follower (coherence = "streams"), set by build_proxy; None: off.
        self.streams: StreamFollower | None = None
        # This worker's side of the change channel (several workers), set by build_proxy.
        self.coherence: Coherence | None = None
        self.admin = admin
        self.metrics = metrics
        # Observers besides the metrics, which are told directly (no Outcome built for them).
        self._observers = tuple(observers)
        # What a remembered GetItem's hit records, by protocol, bound once it is known that
        # the metrics alone observe it (Metrics.hit_recorder).
        self._hit_recorders: dict[str, Callable[[float], None]] = {}
        self.in_flight = 0  # requests being handled; read by the metrics at scrape time
        # Past this many requests in flight a new one is shed at once (0: no cap).
        self._max_in_flight = max_in_flight or None
        self._max_body_bytes = max_body_bytes
        self._access = access  # None: no auth_file, no checks
        self._handlers: dict[Kind, Handler] = {}
        # GetItem's handler, and its answer from the cache when that needs no wait.
        self._get_item: Handler | None = None
        self._cached: Callable[[Call, bool], WireResponse | None] = _no_answer
        # A GetItem body answered before, answered again without a parse (ItemReads'
        # memo); not with access checks, which read the parsed call.
        self._remembered: Callable[[bytes], tuple[WireResponse, str] | None] | None = None
        # The same, as a ReadyAnswer (quick).
        self._ready: Callable[[bytes], tuple[ReadyAnswer, str] | None] | None = None
        if item_reads is not None:
            self._get_item = self._handlers[Kind.ITEM_READ] = item_reads.get_item
            self._cached = item_reads.cached
            if access is None:
                self._remembered = item_reads.memo.remembered
                self._ready = item_reads.memo.ready
            self._handlers[Kind.BATCH_READ] = item_reads.batch_get_item
        if item_writes is not None:
            for kind in (Kind.ITEM_WRITE, Kind.BATCH_WRITE, Kind.TRANSACT_WRITE):
                self._handlers[kind] = item_writes.write
            self._handlers[Kind.TABLE_CHANGE] = item_writes.table_change
            self._handlers[Kind.PARTIQL] = item_writes.statement
        if queries is not None:
            self._handlers[Kind.QUERY] = queries.read
            self._handlers[Kind.SCAN] = queries.read
        # X-Amz-Target -> (target, operation, handler or None, bypass label, metrics name).
        self._routes: dict[str, _Route] = {}

    async def handle(self, request: ClientRequest) -> WireResponse:
        """The answer to ``request`` (what :meth:`answer` gives, awaited when it waits)."""
        answer = self.answer(request)
        return answer if isinstance(answer, WireResponse) else await answer

    def answer(self, request: ClientRequest) -> WireResponse | Coroutine[Any, Any, WireResponse]:
        """The answer at once when it needs no wait (a cache hit, an error found in the
        request), else a coroutine of it, which the caller must run: the request counts as
        in flight until that coroutine ends."""
        observing = self.metrics is not None or bool(self._observers)
        started = time.perf_counter() if observing else 0.0
        call = None
        self.in_flight += 1
        try:
            if self._max_in_flight is not None and self.in_flight > self._max_in_flight:
                raise ThrottlingException(_SHED_MESSAGE)
            if (
                self._remembered is not None
                and request.target == _GET_ITEM_TARGET
                and not request.content_encoding
            ):
                remembered = self._remembered(request.body)
                if remembered is not None:
                    self.in_flight -= 1
                    if observing:
                        seconds = time.perf_counter() - started
                        self._observe_hit(request.protocol, remembered[1], seconds)
                    return remembered[0]
            call, route = self._call(request)
            if self._access is not None:  # before any cache or upstream sees the call
                if request.key_id is None:
                    self._access.admit(
                        raw_path=request.raw_path,
                        headers=request.headers,
                        body=request.body,
                        operation=call.operation,
                        payload=call.payload,
                    )
                else:  # a DAX call: authorizeConnection proved the key
                    self._access.authorize(request.key_id, call.operation, call.payload)
            response = (
                self._cached(call, not request.content_encoding)
                if route[2] is self._get_item
                else None
            )
        except DynamoDBError as error:
            response = wire.error_response(error)
        except Exception:  # the edge answers it with a 500 InternalServerError
            self.in_flight -= 1
            if observing:
                self._observe(request, call, None, time.perf_counter() - started)
            raise
        if response is None:
            assert call is not None
            return self._waiting(request, call, route, started if observing else None)
        self.in_flight -= 1
        if observing:
            self._observe(request, call, response, time.perf_counter() - started)
        return response

    @property
    def answers_quick(self) -> bool:
        """Whether :meth:`quick` can answer anything: not with the item cache off, nor with
        an ``auth_file``."""
        return self._ready is not None

    def quick(
        self, target: bytes | None, encoding: bytes | None, body: bytes
    ) -> ReadyAnswer | None:
        """An HTTP request's answer at once as a :class:`ReadyAnswer`, from its
        ``X-Amz-Target``, ``Content-Encoding`` and body as they came, when it is a GetItem
        hit :meth:`answer` would answer from a remembered body (no ``access``, the target
        exactly GetItem's, no encoding, fewer than ``max_in_flight`` requests in flight:
        else :meth:`answer` sheds it) and observed as :meth:`answer` observes that hit.
        None: not one, nothing counted or changed; :meth:`answer` answers the request."""
        ready = self._ready
        if ready is None or target != _GET_ITEM_TARGET_BYTES or encoding:
            return None
        if self._max_in_flight is not None and self.in_flight >= self._max_in_flight:
            return None
        if self.metrics is None and not self._observers:
            found = ready(body)
            return None if found is None else found[0]
        started = time.perf_counter()
        found = ready(body)
        if found is None:
            return None
        seconds = time.perf_counter() - started
        record = self._hit_recorders.get(HTTP)
        if record is None:
            self._observe_hit(HTTP, found[1], seconds)
        else:  # what _observe_hit does then, one call fewer
            record(seconds)
        return found[0]

    async def _waiting(
        self, request: ClientRequest, call: Call, route: _Route, started: float | None
    ) -> WireResponse:
        """The rest of :meth:`answer` for a call that goes to a handler or the upstream
        (``started``: None when nobody observes)."""
        try:
            handler = route[2]
            if handler is not None:
                response = await handler(call)
                if response.status == 400 and self._tables is not None:
                    self._suspect(call, response)
            else:
                response = relay(await forward(self.upstream, call), route[3])
        except DynamoDBError as error:
            response = wire.error_response(error)
        except Exception:  # the edge answers it with a 500 InternalServerError
            if started is not None:
                self._observe(request, call, None, time.perf_counter() - started)
            raise
        finally:
            self.in_flight -= 1
        if started is not None:
            self._observe(request, call, response, time.perf_counter() - started)
        return response

    @property
    def access(self) -> Access | None:
        """The ``auth_file``'s check of each request (DAX's authorizeConnection too)."""
        return self._access

    @property
    def tables(self) -> TableRegistry | None:
        """The registry of tables' key schemas the caches use (DAX's defineKeySchema too)."""
        return self._tables

    def add_observer(self, observer: Observer) -> None:
        """Let ``observer`` hear every later request's outcome too."""
        self._observers = (observer, *self._observers)
        self._hit_recorders.clear()

    def refused(self, target: str | None, response: WireResponse, seconds: float) -> None:
        """A request the edge answered itself, before :meth:`handle` (a method other than
        POST, a body too large, too slow or unreadable): observed as any other."""
        if self._observers or self.metrics is not None:
            operation, error_type = operation_of_target(target), error_type_of(response)
            self._notify(Outcome(operation, None, BYPASS, response.status, error_type, seconds))

    def _notify(self, outcome: Outcome) -> None:
        if self.metrics is not None:
            self._tell(self.metrics, outcome)
        for observer in self._observers:
            self._tell(observer, outcome)

    @staticmethod
    def _tell(observer: Observer, outcome: Outcome) -> None:
        try:
            observer.observed(outcome)
        except Exception:
            log.exception("observer %r failed", observer)

    def _observe(
        self,
        request: ClientRequest,
        call: Call | None,
        response: WireResponse | None,
        seconds: float,
    ) -> None:
        """Tell the metrics (directly) and the other observers (an Outcome) what came of it."""
        if self._observers or call is None or response is None:
            self._notify(_outcome(request, call, response, seconds))
            return
        status = response.status
        assert self.metrics is not None
        self._record(
            request.protocol,
            operation_name(call.operation),
            cache_of(response),
            status,
            error_type_of(response) if status >= 400 else None,
            table=table_of(call.payload) if self.metrics.per_table else None,
            seconds=seconds,
        )

    def _observe_hit(self, protocol: str, table: str, seconds: float) -> None:
        """:meth:`_observe` for a remembered GetItem body's hit (``table``: as the request
        names it)."""
        record = self._hit_recorders.get(protocol)
        if record is not None:
            record(seconds)
            return
        if self._observers or self.metrics is None:
            self._notify(Outcome(_GET_ITEM, table, HIT, 200, None, seconds, protocol))
            return
        self._record(protocol, _GET_ITEM, HIT, 200, None, table=table, seconds=seconds)
        record = self.metrics.hit_recorder(protocol, _GET_ITEM)
        if record is not None:  # the next hits of this protocol skip the look-ups
            self._hit_recorders[protocol] = record

    def _record(
        self,
        protocol: str,
        operation: str,
        cache: str,
        status: int,
        error_type: str | None,
        *,
        table: str | None,
        seconds: float,
    ) -> None:
        """The metrics told directly, with no other observer (no Outcome built); ``table``
        is only read with per-table metrics."""
        metrics = self.metrics
        assert metrics is not None
        try:
            metrics.record(
                protocol,
                operation,
                cache,
                status,
                error_type,
                table=table,
                seconds=seconds,
            )
        except Exception:
            log.exception("observer %r failed", metrics)

    def _call(self, request: ClientRequest) -> tuple[Call, _Route]:
        # DynamoDB reads the body before it routes: a body that is not JSON is a
        # SerializationException whatever the target says (dynalite's index.js mirrors this).
        body = request.body
        if request.content_encoding:
            body = wire.decode_content(body, request.content_encoding, self._max_body_bytes)
        empty = not body.strip()
        payload = {} if empty else wire.parse_json_object(body)
        route = self._routes.get(request.target) if request.target is not None else None
        if route is None:
            route = self._route(request.target)
        if empty:
            raise SerializationException("Request body is empty; expected a JSON object")
        return Call(route[0], route[1], payload, request.body, request.headers), route

    def _route(self, value: str | None) -> _Route:
        """Where a target goes: its handler, or the upstream (with the label a read a cache
        would serve gets when that cache is off, as the README promises for every one)."""
        target = wire.parse_target(value)
        operation = operations.lookup(target)
        handler = self._handlers.get(operation.kind) if target.prefix == _CACHED_PREFIX else None
        label = BYPASS if operation.kind in _CACHE_READS else None
        route = (target, operation, handler, label)
        if value is not None and operation.kind is not Kind.UNKNOWN:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[value] = route
        return route

    def _suspect(self, call: Call, response: WireResponse) -> None:
        """Have the tables the call names looked up again, when its error says they may
        have changed."""
        assert self._tables is not None
        if error_type_of(response) not in _SUSPICIOUS:
            return
        self._tables.suspect(call.payload.get("TableName"))
        items = call.payload.get("RequestItems")
        if isinstance(items, dict):
            for table in items:
                self._tables.suspect(table)


def _no_answer(call: Call, plain: bool) -> None:
    return None


def _outcome(
    request: ClientRequest, call: Call | None, response: WireResponse | None, seconds: float
) -> Outcome:
    """What a request came to; ``response`` None: a fault the edge answers with a 500."""
    if call is None:  # refused before routing: a bad body or target
        operation, table = operation_of_target(request.target), None
    else:
        operation, table = operation_name(call.operation), table_of(call.payload)
    protocol = request.protocol
    if response is None:
        return Outcome(operation, table, BYPASS, 500, "InternalServerError", seconds, protocol)
    status = response.status
    error_type = error_type_of(response) if status >= 400 else None
    return Outcome(operation, table, cache_of(response), status, error_type, seconds, protocol)
