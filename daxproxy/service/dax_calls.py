"""DAX calls answered through the proxy: the same caches, the same upstream as HTTP.

:class:`DaxService` answers one framed DAX request (:class:`daxproxy.dax.session.Request`)
with the bytes of its reply, or None for authorizeConnection, which gets none. A data call
becomes the DynamoDB JSON request the HTTP edge would hand the proxy
(:class:`~daxproxy.service.proxy.ClientRequest` with the target and body), so hits,
misses, write-through and every other rule of the caches are the HTTP side's; the proxy's
answer becomes DAX's reply (a GetItem's JSON body and its reply remembered for the hot keys:
:mod:`daxproxy.service.dax_memo`), and a DynamoDB error DAX's error triple with the same code,
message, status and request id. Key schemas come from the proxy's table registry
(DescribeTable, cached), attribute-list ids from one :class:`AttributeLists` for every
connection (the namespace is the server's).

Requests are not checked against ``auth_file``: authorizeConnection's signature is not
verified yet, so when ``auth_file`` is set the server answers DAX connections with
:class:`RefusingDax` instead, whose every reply is DAX's authentication refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import orjson

from daxproxy.core import wire
from daxproxy.core.keys import KeySchema
from daxproxy.dax import batches, calls, errors, methods, queries, transactions
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Request
from daxproxy.service.dax_memo import Memo, get_item_shape
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.tables import TableRegistry

log = logging.getLogger(__name__)

_TARGET_PREFIX = "DynamoDB_20120810."
_HEADERS = (("Content-Type", wire.JSON_CONTENT_TYPE),)
_NOT_FOUND = "Requested resource not found"
_GET_ITEM = _TARGET_PREFIX + "GetItem"
# Each GetItem memo's bounds: the hot keys of a read-mostly load, a few MiB at most.
MEMO_ENTRIES = 4096
MEMO_BYTES = 8 << 20


class DaxService:
    """Answers DAX requests for every connection of one proxy."""

    def __init__(
        self, proxy: Proxy, tables: TableRegistry, lists: AttributeLists | None = None
    ) -> None:
        self._proxy = proxy
        self._tables = tables
        self.lists = lists if lists is not None else AttributeLists()
        # GetItem's JSON body by request, and DAX's reply by answer body (dax_memo).
        self._get_bodies: Memo[Hashable] = Memo(MEMO_ENTRIES, MEMO_BYTES)
        self._get_replies: Memo[tuple[KeySchema, bytes]] = Memo(MEMO_ENTRIES, MEMO_BYTES)
        self._handlers: dict[methods.Method, Callable[[Request, Any], Awaitable[bytes]]] = {
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

    async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
        """The reply to ``request`` on a connection accepted at ``endpoint`` (the packed
        IP address and port the client reached: what the endpoints call names)."""
        if not request.method.replies:
            return None
        handler = self._handlers.get(request.method)
        try:
            if handler is None:
                raise calls.invalid(f"{request.method.name} is not served over DAX's protocol yet")
            return await handler(request, endpoint)
        except calls.CallError as error:
            return errors.error_reply(
                error.type, error.message, 400, wire.new_request_id(), error.codes
            )
        except Exception:
            log.exception("a DAX %s call failed", request.method.name)
            return errors.error_reply(
                "InternalServerError", "Internal server error", 500, wire.new_request_id()
            )

    async def _endpoints(self, request: Request, endpoint: tuple[bytes, int]) -> bytes:
        address, port = endpoint
        return calls.endpoints_reply(address, port, "daxproxy")

    async def _key_schema(self, request: Request, endpoint: Any) -> bytes:
        table = calls.table_of(request.args[0])
        return calls.key_schema_reply(await self._schema(table, errors.TABLE_NOT_FOUND))

    async def _list_id(self, request: Request, endpoint: Any) -> bytes:
        return calls.attribute_list_id_reply(request.args[0], self.lists)

    async def _list(self, request: Request, endpoint: Any) -> bytes:
        return calls.attribute_list_reply(request.args[0], self.lists)

    async def _get_item(self, request: Request, endpoint: Any) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]))
        shape = get_item_shape(request.args, schema)
        body = None if shape is None else self._get_bodies.get(shape)
        paths = None
        if body is None:
            payload, paths = calls.get_item_payload(request.args, schema)
            body = orjson.dumps(payload)
            if shape is not None:
                self._get_bodies.put(shape, body, len(body))
        response = await self._proxy.handle(ClientRequest(_HEADERS, body, _GET_ITEM))
        if paths is not None:
            answer = _json_of(response)
            if isinstance(answer, bytes):
                return answer
            return calls.get_item_reply(answer, schema, self.lists, paths)
        replied = (schema, response.body)  # the reply is a function of these alone
        reply = self._get_replies.get(replied)
        if reply is None:
            answer = _json_of(response)
            if isinstance(answer, bytes):
                return answer
            reply = calls.get_item_reply(answer, schema, self.lists)
            self._get_replies.put(replied, reply, len(response.body) + len(reply))
        return reply

    async def _put_item(self, request: Request, endpoint: Any) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]))
        return await self._write(
            "PutItem", calls.put_item_payload(request.args, schema, self.lists), schema
        )

    async def _delete_item(self, request: Request, endpoint: Any) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]))
        return await self._write(
            "DeleteItem", calls.delete_item_payload(request.args, schema), schema
        )

    async def _update_item(self, request: Request, endpoint: Any) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]))
        return await self._write(
            "UpdateItem", calls.update_item_payload(request.args, schema), schema
        )

    async def _write(self, operation: str, payload: dict[str, Any], schema: KeySchema) -> bytes:
        answer = await self._call(operation, payload)
        if isinstance(answer, bytes):
            return answer
        return calls.write_reply(answer, schema, self.lists, payload.get("ReturnValues"))

    async def _query(self, request: Request, endpoint: Any) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]))
        payload, paths = queries.query_payload(request.args, schema)
        return await self._read("Query", payload, schema, paths)

    async def _scan(self, request: Request, endpoint: Any) -> bytes:
        schema = await self._schema(calls.table_of(request.args[0]))
        payload, paths = queries.scan_payload(request.args, schema)
        return await self._read("Scan", payload, schema, paths)

    async def _read(
        self, operation: str, payload: dict[str, Any], schema: KeySchema, paths: Any
    ) -> bytes:
        answer = await self._call(operation, payload)
        if isinstance(answer, bytes):
            return answer
        index = "IndexName" in payload
        return queries.read_reply(answer, schema, self.lists, paths, index)

    async def _batch_get_item(self, request: Request, endpoint: Any) -> bytes:
        schemas = {t: await self._schema(t) for t in batches.tables_of(request.args)}
        payload, paths = batches.batch_get_payload(request.args, schemas)
        answer = await self._call("BatchGetItem", payload)
        if isinstance(answer, bytes):
            return answer
        return batches.batch_get_reply(answer, schemas, self.lists, paths)

    async def _batch_write_item(self, request: Request, endpoint: Any) -> bytes:
        schemas = {t: await self._schema(t) for t in batches.tables_of(request.args)}
        payload = batches.batch_write_payload(request.args, schemas, self.lists)
        answer = await self._call("BatchWriteItem", payload)
        if isinstance(answer, bytes):
            return answer
        return batches.batch_write_reply(answer, schemas, self.lists)

    async def _transact_get_items(self, request: Request, endpoint: Any) -> bytes:
        tables = transactions.tables_of(request.args, 0)
        schemas = {t: await self._schema(t) for t in tables}
        payload, paths = transactions.transact_get_payload(request.args, schemas)
        answer = await self._call("TransactGetItems", payload)
        if isinstance(answer, bytes):
            return answer
        return transactions.transact_get_reply(answer, schemas, tables, self.lists, paths)

    async def _transact_write_items(self, request: Request, endpoint: Any) -> bytes:
        schemas = {t: await self._schema(t) for t in transactions.tables_of(request.args, 1)}
        payload = transactions.transact_write_payload(request.args, schemas, self.lists)
        answer = await self._call("TransactWriteItems", payload)
        if isinstance(answer, bytes):
            return answer
        return transactions.transact_write_reply(answer)

    async def _schema(self, table: str, codes: tuple[int, ...] | None = None) -> KeySchema:
        info = await self._tables.get(table)
        if info is None:
            raise calls.CallError("ResourceNotFoundException", _NOT_FOUND, codes)
        return info.schema

    async def _call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any] | bytes:
        """The proxy's answer to the DynamoDB JSON request: its body as JSON on success,
        else the bytes of DAX's error reply."""
        response = await self._proxy.handle(
            ClientRequest(_HEADERS, orjson.dumps(payload), _TARGET_PREFIX + operation)
        )
        return _json_of(response)


class RefusingDax:
    """Answers every DAX request that gets a reply with DAX's authentication refusal
    (:data:`~daxproxy.dax.errors.AUTH_REFUSED`: the clients raise it at once, unretried)."""

    MESSAGE = (
        "daxproxy does not serve DAX's protocol while auth_file is set: "
        "authorizeConnection's signature is not checked yet; use HTTP"
    )

    async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
        if not request.method.replies:
            return None
        return errors.error_reply(
            "AccessDeniedException", self.MESSAGE, 400, wire.new_request_id(), errors.AUTH_REFUSED
        )


def _json_of(response: wire.WireResponse) -> dict[str, Any] | bytes:
    """The proxy's answer's body as JSON on success, else the bytes of DAX's error reply."""
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        body = None
    if response.status == 200 and isinstance(body, dict):
        return body
    return _error(response, body)


def _error(response: wire.WireResponse, body: Any) -> bytes:
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
    if not isinstance(reasons, list) or not all(isinstance(r, dict) for r in reasons):
        reasons = None
    return errors.error_reply(
        error_type, str(message or ""), response.status, request_id, reasons=reasons
    )
