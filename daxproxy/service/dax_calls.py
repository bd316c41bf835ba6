"""DAX calls answered through the proxy: the same caches, the same upstream as HTTP.

:class:`DaxService` answers one framed DAX request (:class:`daxproxy.dax.session.Request`)
with the bytes of its reply, or None for authorizeConnection, which gets none. A data call
becomes the DynamoDB JSON request the HTTP edge would hand the proxy
(:class:`DaxRequest`, counted and logged as ``protocol="dax"``), so hits,
misses, write-through and every other rule of the caches are the HTTP side's; the proxy's
answer becomes DAX's reply (a GetItem's JSON body and its reply remembered for the hot keys:
:mod:`daxproxy.service.dax_memo`), and a DynamoDB error DAX's error triple with the same code,
message, status and request id. Key schemas come from the proxy's table registry
(DescribeTable, cached), attribute-list ids from one :class:`AttributeLists` for every
connection (the namespace is the server's).

With ``auth_file`` (the proxy's :class:`~daxproxy.core.access.Access`), each connection
gets its own :class:`~daxproxy.service.dax_auth.AuthorizedConnection` in front
(:meth:`DaxService.connection`), which passes on the key its authorizeConnection proved.
A data call's DynamoDB request then carries that key (:class:`DaxRequest`) and the proxy
checks the key's grant on it as on an HTTP request, less the signature. Before a table's
key schema is looked up (defineKeySchema, and every data call), the key must be allowed
one of the data operations DAX serves on that table, so a key learns nothing of a table
it may not use. defineAttributeList(Id) and endpoints name no table: an authorized
connection is enough. Without ``auth_file``, :meth:`DaxService.connection` is the service
itself and nothing is checked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ClassVar

import orjson

from daxproxy.core import wire
from daxproxy.core.errors import AccessDeniedException
from daxproxy.core.keys import KeySchema
from daxproxy.dax import batches, calls, errors, list_paths, methods, queries, transactions
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.expressions import Path
from daxproxy.dax.session import Request
from daxproxy.service.dax_auth import AuthorizedConnection
from daxproxy.service.dax_memo import get_item_shape
from daxproxy.service.memo import Memo
from daxproxy.service.observe import DAX
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.tables import TableRegistry

log = logging.getLogger(__name__)

_TARGET_PREFIX = "DynamoDB_20120810."
_HEADERS = (("Content-Type", wire.JSON_CONTENT_TYPE),)
_NOT_FOUND = "Requested resource not found"
_GET_ITEM = _TARGET_PREFIX + "GetItem"
# The GetItem memos' bounds: the hot keys of a read-mostly load (the replies hold each
# answer and its reply: about twice an item's size).
MEMO_ENTRIES = 16384
MEMO_BYTES = 4 << 20
MEMO_REPLY_BYTES = 32 << 20
# A method's handler: the request, the endpoint the client reached, the connection's key.
Handler = Callable[[Request, Any, str | None], Awaitable[bytes]]
# The operations DAX serves on a table: a key allowed none of them on it is told nothing
# of it, not even its key schema.
DATA_ACTIONS = tuple(
    m.name
    for m in (
        methods.GET_ITEM,
        methods.PUT_ITEM,
        methods.DELETE_ITEM,
        methods.UPDATE_ITEM,
        methods.QUERY,
        methods.SCAN,
        methods.BATCH_GET_ITEM,
        methods.BATCH_WRITE_ITEM,
        methods.TRANSACT_GET_ITEMS,
        methods.TRANSACT_WRITE_ITEMS,
    )
)

# Writes DynamoDB's CancellationReasons as DAX's (code, message, old item) triples.
Reasons = Callable[[list[dict[str, Any]]], list[errors.Reason]]


def _without_items(reasons: list[dict[str, Any]]) -> list[errors.Reason]:
    """Reasons without old items (only a TransactWriteItems' has them)."""
    return [errors.reason(r) for r in reasons]


class DaxService:
    """Answers DAX requests for every connection of one proxy."""

    def __init__(
        self,
        proxy: Proxy,
        tables: TableRegistry,
        lists: AttributeLists | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: what times each connection's authorization (with ``auth_file``)."""
        self._proxy = proxy
        self._access = proxy.access
        self._tables = tables
        self._clock = clock
        self.lists = lists if lists is not None else AttributeLists()
        # By GetItem request shape: its JSON body; the answer body and its DAX reply.
        self._get_bodies: Memo[Hashable, bytes] = Memo(MEMO_ENTRIES, MEMO_BYTES)
        self._get_replies: Memo[Hashable, tuple[bytes, bytes]] = Memo(
            MEMO_ENTRIES, MEMO_REPLY_BYTES
        )
        self._handlers: dict[methods.Method, Handler] = {
            methods.ENDPOINTS: self._endpoints,
            methods.DEFINE_KEY_SCHEMA: self._key_schema,
            methods.DEFINE_ATTRIBUTE_LIST_ID: self._list_id,
            methods.DEFINE_ATTRIBUTE_LIST: self._list,
            methods.GET_ITEM: self._get_item,
            methods.PUT_ITEM: self._put_item,
            methods.DELETE_ITEM: self._delete_item,
            methods.UPDATE_ITEM: self._update_item,
            methods.QUERY: self._query,
            methods.SCAN: self._scan,
            methods.BATCH_GET_ITEM: self._batch_get_item,
            methods.BATCH_WRITE_ITEM: self._batch_write_item,
            methods.TRANSACT_GET_ITEMS: self._transact_get_items,
            methods.TRANSACT_WRITE_ITEMS: self._transact_write_items,
        }

    def connection(self) -> DaxService | AuthorizedConnection:
        """What answers one new connection: this service, or with ``auth_file`` the
        connection's authorization in front of it."""
        if self._access is None:
            return self
        return AuthorizedConnection(self.answer, self._access, self._clock)

    async def answer(
        self, request: Request, endpoint: tuple[bytes, int], key_id: str | None = None
    ) -> bytes | None:
        """The reply to ``request`` on a connection accepted at ``endpoint`` (the packed
        IP address and port the client reached: what the endpoints call names);
        ``key_id``: the key its authorizeConnection proved, with ``auth_file``."""
        if not request.method.replies:
            return None
        handler = self._handlers.get(request.method)
        try:
            if handler is None:
                raise calls.invalid(f"{request.method.name} is not served over DAX's protocol yet")
            return await handler(request, endpoint, key_id)
        except calls.CallError as error:
            return errors.error_reply(
                error.type, error.message, 400, wire.new_request_id(), error.codes
            )
        except Exception:
            log.exception("a DAX %s call failed", request.method.name)
            return errors.error_reply(
                "InternalServerError", "Internal server error", 500, wire.new_request_id()
            )

    async def _endpoints(
        self, request: Request, endpoint: tuple[bytes, int], key_id: str | None
    ) -> bytes:
        address, port = endpoint
        return calls.endpoints_reply(address, port, "daxproxy")

    async def _key_schema(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        table = calls.table_of(request.args[0])
        return calls.key_schema_reply(await self._schema(table, key_id, errors.TABLE_NOT_FOUND))

    async def _list_id(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        return calls.attribute_list_id_reply(request.args[0], self.lists)

    async def _list(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        return calls.attribute_list_reply(request.args[0], self.lists)

    async def _get_item(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        table = calls.table_of(request.args[0])
        schema = await self._schema(table, key_id)
        # None for a projection (its options are not plain integers): never remembered.
        shape = get_item_shape(request.args, schema)
        body = None if shape is None else self._get_bodies.get(shape)
        paths = None
        if body is None:
            payload, paths = calls.get_item_payload(request.args, schema)
            await self._check_index_keys(table, paths)
            body = orjson.dumps(payload)
            if shape is not None:
                self._get_bodies.put(shape, body, len(body))
        response = await self._proxy.handle(_request(body, _GET_ITEM, key_id))
        made = None if shape is None else self._get_replies.get(shape)
        if made is not None and made[0] == response.body:  # the reply of this very answer
            return made[1]
        answer = _json_of(response)
        if isinstance(answer, bytes):
            return answer
        reply = calls.get_item_reply(answer, schema, self.lists, paths)
        if shape is not None:
            size = len(response.body) + len(reply)
            self._get_replies.put(shape, (response.body, reply), size)
        return reply

    async def _put_item(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]), key_id)
        return await self._write(
            "PutItem", calls.put_item_payload(request.args, schema, self.lists), schema, key_id
        )

    async def _delete_item(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]), key_id)
        return await self._write(
            "DeleteItem", calls.delete_item_payload(request.args, schema), schema, key_id
        )

    async def _update_item(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]), key_id)
        return await self._write(
            "UpdateItem", calls.update_item_payload(request.args, schema), schema, key_id
        )

    async def _write(
        self, operation: str, payload: dict[str, Any], schema: KeySchema, key_id: str | None
    ) -> bytes:
        answer = await self._call(operation, payload, key_id)
        if isinstance(answer, bytes):
            return answer
        return calls.write_reply(answer, schema, self.lists, payload.get("ReturnValues"))

    async def _query(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]), key_id)
        payload, paths = queries.query_payload(request.args, schema)
        await self._check_index_keys(payload["TableName"], paths)
        return await self._read("Query", payload, schema, paths, key_id)

    async def _scan(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]), key_id)
        payload, paths = queries.scan_payload(request.args, schema)
        await self._check_index_keys(payload["TableName"], paths)
        return await self._read("Scan", payload, schema, paths, key_id)

    async def _read(
        self,
        operation: str,
        payload: dict[str, Any],
        schema: KeySchema,
        paths: Any,
        key_id: str | None,
    ) -> bytes:
        answer = await self._call(operation, payload, key_id)
        if isinstance(answer, bytes):
            return answer
        index = "IndexName" in payload
        return queries.read_reply(answer, schema, self.lists, paths, index)

    async def _batch_get_item(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schemas = {t: await self._schema(t, key_id) for t in batches.tables_of(request.args)}
        payload, paths = batches.batch_get_payload(request.args, schemas)
        for table, table_paths in paths.items():
            await self._check_index_keys(table, table_paths)
        answer = await self._call("BatchGetItem", payload, key_id)
        if isinstance(answer, bytes):
            return answer
        return batches.batch_get_reply(answer, schemas, self.lists, paths)

    async def _batch_write_item(self, request: Request, endpoint: Any, key_id: str | None) -> bytes:
        schemas = {t: await self._schema(t, key_id) for t in batches.tables_of(request.args)}
        payload = batches.batch_write_payload(request.args, schemas, self.lists)
        answer = await self._call("BatchWriteItem", payload, key_id)
        if isinstance(answer, bytes):
            return answer
        return batches.batch_write_reply(answer, schemas, self.lists)

    async def _transact_get_items(
        self, request: Request, endpoint: Any, key_id: str | None
    ) -> bytes:
        tables = transactions.tables_of(request.args, 0)
        schemas = {t: await self._schema(t, key_id) for t in tables}
        payload, paths = transactions.transact_get_payload(request.args, schemas)
        for table, get_paths in zip(tables, paths, strict=True):
            await self._check_index_keys(table, get_paths)
        answer = await self._call("TransactGetItems", payload, key_id)
        if isinstance(answer, bytes):
            return answer
        return transactions.transact_get_reply(answer, schemas, tables, self.lists, paths)

    async def _transact_write_items(
        self, request: Request, endpoint: Any, key_id: str | None
    ) -> bytes:
        tables = transactions.tables_of(request.args, 1)
        schemas = {t: await self._schema(t, key_id) for t in tables}
        payload = transactions.transact_write_payload(request.args, schemas, self.lists)
        answer = await self._call(
            "TransactWriteItems",
            payload,
            key_id,
            lambda reasons: transactions.cancellation_reasons(reasons, tables, schemas, self.lists),
        )
        if isinstance(answer, bytes):
            return answer
        return transactions.transact_write_reply(answer)

    async def _schema(
        self, table: str, key_id: str | None, codes: tuple[int, ...] | None = None
    ) -> KeySchema:
        if key_id is not None:  # before the table is looked up: a refusal tells nothing
            assert self._access is not None
            try:
                self._access.authorize_any(key_id, DATA_ACTIONS, table)
            except AccessDeniedException as denied:
                raise calls.CallError(denied.code, denied.message) from None
        info = await self._tables.get(table)
        if info is None:
            raise calls.CallError("ResourceNotFoundException", _NOT_FOUND, codes)
        return info.schema

    async def _check_index_keys(self, table: str, paths: list[Path] | None) -> None:
        """A projection with list indexes is asked of DynamoDB cut before them: a step into
        an index's key attribute, which DynamoDB refuses, is refused here."""
        if paths is None or not list_paths.has_index(paths):
            return
        info = await self._tables.get(table)
        try:
            list_paths.check_index_keys(paths, info.index_keys if info else ())
        except list_paths.Refused as error:
            raise calls.invalid(str(error)) from None

    async def _call(
        self,
        operation: str,
        payload: dict[str, Any],
        key_id: str | None,
        reasons: Reasons = _without_items,
    ) -> dict[str, Any] | bytes:
        """The proxy's answer to the DynamoDB JSON request (made by ``key_id``, with
        ``auth_file``): its body as JSON on success, else the bytes of DAX's error reply (a
        cancelled transaction's reasons written by ``reasons``)."""
        sent, target = orjson.dumps(payload), _TARGET_PREFIX + operation
        response = await self._proxy.handle(_request(sent, target, key_id))
        return _json_of(response, reasons)


class DaxRequest(ClientRequest):
    """A DAX call's DynamoDB JSON request, counted and logged as ``protocol="dax"``, with
    the key its connection's authorizeConnection proved (None without ``auth_file``): the
    proxy checks that key's grant, not a signature."""

    __slots__ = ("key_id",)
    protocol: ClassVar[str] = DAX

    def __init__(self, body: bytes, target: str, key_id: str | None) -> None:
        super().__init__(_HEADERS, body, target)
        self.key_id = key_id


def _request(body: bytes, target: str, key_id: str | None) -> ClientRequest:
    """The DynamoDB JSON request of a DAX call (made by ``key_id``, with ``auth_file``)."""
    return DaxRequest(body, target, key_id)


def _json_of(
    response: wire.WireResponse, reasons: Reasons = _without_items
) -> dict[str, Any] | bytes:
    """The proxy's answer's body as JSON on success, else the bytes of DAX's error reply (a
    cancelled transaction's reasons written by ``reasons``)."""
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        body = None
    if response.status == 200 and isinstance(body, dict):
        return body
    return _error(response, body, reasons)


def _error(response: wire.WireResponse, body: Any, encode: Reasons) -> bytes:
    """DAX's error reply for an answer that is not a success."""
    request_id = next(
        (v for k, v in response.headers if k.lower() == wire.REQUEST_ID_HEADER.lower()),
        wire.new_request_id(),
    )
    if not isinstance(body, dict):
        body = {}
    error_type = str(body.get("__type") or "InternalServerError")
    message = body.get("message", body.get("Message", ""))
    reasons = body.get("CancellationReasons")
    return errors.error_reply(
        error_type,
        str(message or ""),
        response.status,
        request_id,
        reasons=encode(reasons)
        if isinstance(reasons, list) and all(isinstance(r, dict) for r in reasons)
        else None,
    )
