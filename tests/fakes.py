"""Fakes for the service layer: an upstream that records what it is sent
(:class:`FakeUpstream`), and a small DynamoDB whose answers a test can hold and release in
any order (:class:`HeldDynamoDB`)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from daxproxy.core.errors import DynamoDBError, InternalServerError
from daxproxy.core.wire import Headers, Target
from daxproxy.service.upstream import UpstreamResponse


@dataclass
class Sent:
    target: Target
    body: bytes
    headers: Headers
    retry_safe: bool


@dataclass
class FakeUpstream:
    """Answers every request with ``answer(sent)``; ``ready`` is what ping reports."""

    answer: Callable[[Sent], UpstreamResponse | DynamoDBError] = lambda sent: UpstreamResponse(
        200, [("x-amzn-RequestId", "UPSTREAM"), ("x-amz-crc32", "2745614147")], b"{}"
    )
    ready: bool = True
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        sent = Sent(target, body, headers, retry_safe)
        self.sent.append(sent)
        result = self.answer(sent)
        if isinstance(result, DynamoDBError):
            raise result
        return result

    async def ping(self) -> bool:
        return self.ready

    async def close(self) -> None:
        self.closed = True


# A small DynamoDB whose answers can be held ---------------------------------------------


_incarnations = itertools.count(1)


@dataclass
class FakeTable:
    """One table of :class:`HeldDynamoDB`: its key attributes (string-typed) and items."""

    name: str
    hash_key: str = "pk"
    range_key: str | None = None
    items: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)
    # Which incarnation: a table deleted and created again gets a new one, as in DynamoDB.
    table_id: str = field(default_factory=lambda: f"table-{next(_incarnations)}")

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:us-east-1:123456789012:table/{self.name}"

    @property
    def key_names(self) -> tuple[str, ...]:
        return (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)

    def key_of(self, item: dict[str, Any]) -> tuple[str, ...]:
        """The item's key; raises KeyError when it lacks a key attribute."""
        return tuple(orjson.dumps(item[name]).decode() for name in self.key_names)

    def description(self) -> dict[str, Any]:
        return {
            "TableName": self.name,
            "TableArn": self.arn,
            "TableId": self.table_id,
            "TableStatus": "ACTIVE",
            "KeySchema": [
                {"AttributeName": name, "KeyType": kind}
                for name, kind in zip(self.key_names, ("HASH", "RANGE"), strict=False)
            ],
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": "S"} for name in self.key_names
            ],
        }


class Hold:
    """One request :class:`HeldDynamoDB` holds: it reads and writes its state when the request
    arrives (``reached`` is then set) and answers only when the test calls :meth:`release`.

    ``late``: the request reaches DynamoDB only when released (it reads or writes then), as
    a request slow on its way there. ``status`` answers with that error status instead (the
    write applied first unless ``applied`` is False); ``timeout`` raises the proxy's
    no-answer error, InternalServerError, as :class:`~daxproxy.service.upstream.HttpUpstream`
    does when the request timeout runs out; ``unprocessed`` (BatchWriteItem) leaves those
    items unwritten and answers them as ``UnprocessedItems`` (BatchGetItem: those keys, as
    ``UnprocessedKeys``).
    """

    def __init__(
        self,
        operation: str,
        *,
        late: bool = False,
        status: int | None = None,
        timeout: bool = False,
        applied: bool = True,
        unprocessed: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.operation = operation
        self.late = late
        self.status = status
        self.timeout = timeout
        self.applied = applied
        self.unprocessed = unprocessed
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def wait_reached(self) -> None:
        await self.reached.wait()


class HeldDynamoDB:
    """An in-memory DynamoDB for the service layer, whose answers the test can hold.

    Serves GetItem, BatchGetItem, PutItem, UpdateItem (``SET name = :value, ...``),
    DeleteItem, BatchWriteItem, TransactWriteItems (Put, Update, Delete), Query and Scan
    (``hash = :value`` on the table), DescribeTable, DeleteTable, UpdateTable, CreateTable
    and ExecuteStatement (``UPDATE "t" SET "a" = ? WHERE "pk" = ?``, ``DELETE FROM "t"
    WHERE "pk" = ?``), on the tables it is given, keys and values of type S. A key that does
    not match the table's key schema gets DynamoDB's ValidationException.

    Each request reads or changes the state when it arrives, as DynamoDB does; the answer is
    computed then. :meth:`hold` makes the next request of an operation wait, after that,
    until the test releases it, so a read can read early and answer late and writes can
    answer in any order. Not held, a request answers at once. :meth:`put_direct` changes an
    item behind the proxy's back (another client writing to DynamoDB straight).
    """

    def __init__(self, *tables: FakeTable) -> None:
        self.tables = {table.name: table for table in tables or (FakeTable("t"),)}
        self.sent: list[Sent] = []
        self._holds: list[Hold] = []
        self.closed = False

    # The test's controls ---------------------------------------------------------------

    def hold(self, operation: str, **how: Any) -> Hold:
        """Hold the next request of ``operation`` (see :class:`Hold` for ``how``)."""
        held = Hold(operation, **how)
        self._holds.append(held)
        return held

    def put_direct(self, table: str, item: dict[str, Any]) -> None:
        target = self.tables[table]
        target.items[target.key_of(item)] = item

    def item(self, table: str, **key: str) -> dict[str, Any] | None:
        target = self.tables[table]
        return target.items.get(target.key_of({k: {"S": v} for k, v in key.items()}))

    def count(self, operation: str) -> int:
        return sum(1 for sent in self.sent if sent.target.operation == operation)

    # The Upstream interface ------------------------------------------------------------

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        self.sent.append(Sent(target, body, headers, retry_safe))
        operation = target.operation
        held = next((h for h in self._holds if h.operation == operation), None)
        if held is not None:
            self._holds.remove(held)
        payload = orjson.loads(body)
        if held is not None and held.late:
            held.reached.set()
            await held._released.wait()
        answer: dict[str, Any] = {}
        error = None
        try:
            if held is None or held.applied:
                answer = self._answer(operation, payload, held)
        except _Refused as refused:
            error = refused
        if held is not None:
            if not held.late:
                held.reached.set()
                await held._released.wait()
            if held.timeout:
                raise InternalServerError("The upstream DynamoDB endpoint did not answer")
            if held.status is not None:
                return _error(held.status, "InternalServerError")
        if error is not None:
            return _error(400, error.code)
        return UpstreamResponse(200, [("x-amzn-RequestId", "FAKE")], orjson.dumps(answer))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True

    # DynamoDB ----------------------------------------------------------------------------

    def _table(self, name: object) -> FakeTable:
        if isinstance(name, str):
            table = self.tables.get(name.rsplit(":table/", 1)[-1])
            if table is not None and name in (table.name, table.arn):  # not another account's
                return table
        raise _Refused("ResourceNotFoundException")

    def _key(self, table: FakeTable, key: dict[str, Any]) -> tuple[str, ...]:
        if set(key) != set(table.key_names):
            raise _Refused("ValidationException")
        return table.key_of(key)

    def _answer(  # noqa: PLR0911, PLR0912
        self, operation: str, payload: dict[str, Any], held: Hold | None
    ) -> dict[str, Any]:
        if operation == "DescribeTable":
            return {"Table": self._table(payload.get("TableName")).description()}
        if operation == "CreateTable":
            keys = {k["KeyType"]: k["AttributeName"] for k in payload["KeySchema"]}
            table = FakeTable(payload["TableName"], keys["HASH"], keys.get("RANGE"))
            self.tables[table.name] = table
            return {"TableDescription": table.description()}
        if operation in ("DeleteTable", "UpdateTable"):
            table = self._table(payload.get("TableName"))
            if operation == "DeleteTable":
                del self.tables[table.name]
            return {"TableDescription": table.description()}
        if operation == "GetItem":
            table = self._table(payload.get("TableName"))
            item = table.items.get(self._key(table, payload["Key"]))
            return {} if item is None else {"Item": item}
        if operation == "BatchGetItem":
            skipped = held.unprocessed if held is not None else ()
            responses: dict[str, list[dict[str, Any]]] = {}
            left: dict[str, dict[str, Any]] = {}
            for name, request in payload["RequestItems"].items():
                table = self._table(name)
                for key in request["Keys"]:
                    if key in skipped:
                        left.setdefault(name, {"Keys": []})["Keys"].append(key)
                    elif (found := table.items.get(self._key(table, key))) is not None:
                        responses.setdefault(name, []).append(found)
            return {"Responses": responses, "UnprocessedKeys": left}
        if operation == "PutItem":
            table = self._table(payload.get("TableName"))
            self._put(table, payload["Item"])
            return {}
        if operation == "UpdateItem":
            table = self._table(payload.get("TableName"))
            item = self._update(table, payload)
            return {"Attributes": item} if payload.get("ReturnValues") == "ALL_NEW" else {}
        if operation == "DeleteItem":
            table = self._table(payload.get("TableName"))
            table.items.pop(self._key(table, payload["Key"]), None)
            return {}
        if operation == "BatchWriteItem":
            return self._batch_write(payload, held.unprocessed if held is not None else ())
        if operation == "TransactWriteItems":
            for action in payload["TransactItems"]:
                self._transact(action)
            return {}
        if operation in ("Query", "Scan"):
            return self._query(payload)
        if operation == "ExecuteStatement":
            return self._statement(payload)
        raise _Refused("UnknownOperationException")

    def _put(self, table: FakeTable, item: dict[str, Any]) -> None:
        try:
            key = table.key_of(item)
        except KeyError:
            raise _Refused("ValidationException") from None
        table.items[key] = item

    def _update(self, table: FakeTable, payload: dict[str, Any]) -> dict[str, Any]:
        key = self._key(table, payload["Key"])
        item = dict(table.items.get(key) or payload["Key"])
        names = payload.get("ExpressionAttributeNames", {})
        values = payload.get("ExpressionAttributeValues", {})
        expression = payload.get("UpdateExpression", "")
        if not expression.startswith("SET "):
            raise _Refused("ValidationException")
        for assignment in expression[4:].split(","):
            name, value = (part.strip() for part in assignment.split("="))
            item[names.get(name, name)] = values[value]
        table.items[key] = item
        return item

    def _batch_write(
        self, payload: dict[str, Any], unprocessed: tuple[dict[str, Any], ...]
    ) -> dict[str, Any]:
        left: dict[str, list[dict[str, Any]]] = {}
        for name, requests in payload["RequestItems"].items():
            table = self._table(name)
            for request in requests:
                if request in unprocessed:
                    left.setdefault(name, []).append(request)
                elif "PutRequest" in request:
                    self._put(table, request["PutRequest"]["Item"])
                else:
                    table.items.pop(self._key(table, request["DeleteRequest"]["Key"]), None)
        return {"UnprocessedItems": left}

    def _transact(self, action: dict[str, Any]) -> None:
        if "Put" in action:
            self._put(self._table(action["Put"]["TableName"]), action["Put"]["Item"])
        elif "Update" in action:
            self._update(self._table(action["Update"]["TableName"]), action["Update"])
        elif "Delete" in action:
            table = self._table(action["Delete"]["TableName"])
            table.items.pop(self._key(table, action["Delete"]["Key"]), None)

    def _query(self, payload: dict[str, Any]) -> dict[str, Any]:
        table = self._table(payload.get("TableName"))
        items = list(table.items.values())
        condition = payload.get("KeyConditionExpression")
        if condition is not None:
            name, value = (part.strip() for part in condition.split("="))
            name = payload.get("ExpressionAttributeNames", {}).get(name, name)
            wanted = payload["ExpressionAttributeValues"][value]
            items = [item for item in items if item.get(name) == wanted]
        return {"Items": items, "Count": len(items), "ScannedCount": len(items)}

    _UPDATE = re.compile(r'UPDATE "(\w+)" SET "(\w+)" = \? WHERE "(\w+)" = \?$')
    _DELETE = re.compile(r'DELETE FROM "(\w+)" WHERE "(\w+)" = \?$')

    def _statement(self, payload: dict[str, Any]) -> dict[str, Any]:
        text, parameters = payload["Statement"], payload.get("Parameters", [])
        text = text.split("--", 1)[0].strip()  # a trailing comment
        text = re.sub(r"\s*--[^\n]*$", "", text)  # a comment at the end
        if match := self._UPDATE.match(text):
            name, attribute, key_name = match.groups()
            table = self._table(name)
            key = self._key(table, {key_name: parameters[1]})
            if key in table.items:
                table.items[key] = {**table.items[key], attribute: parameters[0]}
            return {"Items": []}
        if match := self._DELETE.match(text):
            name, key_name = match.groups()
            table = self._table(name)
            table.items.pop(self._key(table, {key_name: parameters[0]}), None)
            return {"Items": []}
        raise _Refused("ValidationException")


class _Refused(Exception):
    """DynamoDB's 400 for a request: ``code`` is its error type."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _error(status: int, code: str) -> UpstreamResponse:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
    return UpstreamResponse(status, [("x-amzn-RequestId", "FAKE")], orjson.dumps(body))
