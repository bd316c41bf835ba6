"""What each client request came to, for whoever watches: metrics, a request log.

After every request :class:`daxproxy.service.proxy.Proxy` hands each of its observers one
:class:`Outcome`: the operation (a name from :mod:`daxproxy.core.operations`' table, or
``"Unknown"``), the table of a single-table request, what the cache did (``hit``, ``miss``,
``bypass``: the cache was not consulted, or ``stale``: served past its TTL because the
upstream failed), the status sent, the short DynamoDB error name of an error, the time
spent, and the protocol the client spoke (``http``, or ``dax``: a call on a DAX connection,
:mod:`daxproxy.service.dax_calls`). Outcomes are built only when someone observes, so a
proxy without observers pays nothing for them. An observer is called on the request's own
task: it must be quick and must not raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from daxproxy.core import operations, wire
from daxproxy.core.errors import DynamoDBError
from daxproxy.core.operations import Kind, Operation
from daxproxy.core.wire import WireResponse
from daxproxy.service.calls import BYPASS, CACHE_HEADER, HIT, MISS, STALE

UNKNOWN = "Unknown"
HTTP, DAX = "http", "dax"  # the protocols a client speaks to the proxy's port
_UNKNOWN_KIND = Kind.UNKNOWN  # a module global is found faster than an enum member
CACHE_OUTCOMES = (HIT, MISS, BYPASS, STALE)
_OUTCOMES = frozenset(CACHE_OUTCOMES)
# An error body is a few hundred bytes; this only bounds a broken upstream's compressed one.
_MAX_ERROR_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    operation: str  # "GetItem", ... or "Unknown"
    table: str | None  # TableName of single-table requests
    cache: str  # "hit" | "miss" | "bypass" | "stale"
    status: int  # HTTP status sent to the client
    error_type: str | None  # short DynamoDB error name (after '#') for status >= 400
    seconds: float  # time spent handling
    protocol: str = HTTP  # "http" | "dax"


class Observer(Protocol):
    def observed(self, outcome: Outcome) -> None: ...


def operation_name(operation: Operation) -> str:
    """The name to report: the table's name, or "Unknown" for one it does not know."""
    return UNKNOWN if operation.kind is _UNKNOWN_KIND else operation.name


def operation_of_target(target: str | None) -> str:
    """The operation an ``X-Amz-Target`` names, for a request that failed before routing."""
    try:
        return operation_name(operations.lookup(wire.parse_target(target)))
    except DynamoDBError:
        return UNKNOWN


def table_of(payload: dict[str, Any]) -> str | None:
    """``TableName``, or the one table of a batch; None for several tables or none."""
    table = payload.get("TableName")
    if isinstance(table, str):
        return table
    items = payload.get("RequestItems")
    if isinstance(items, dict) and len(items) == 1:
        (only,) = items
        return str(only)
    return None


def cache_of(response: WireResponse) -> str:
    """What the cache did, from the header the proxy puts last on the answers it labels."""
    headers = response.headers
    if headers:
        name, value = headers[-1]
        if name == CACHE_HEADER and value in _OUTCOMES:
            return value
    return BYPASS


def error_type_of(response: WireResponse) -> str | None:
    """The short error name of an error answer (``__type`` after '#'), or None."""
    if response.status < 400:
        return None
    try:
        body = wire.decode_body(response.headers, response.body, _MAX_ERROR_BYTES)
        error_type = orjson.loads(body).get("__type")
    except (DynamoDBError, orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(error_type, str):
        return None
    return error_type.rpartition("#")[2] or None
