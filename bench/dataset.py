"""The data a run reads: tables seeded in the upstream, caches warmed through the proxy.

Contract: :func:`seed` creates a workload's table in the upstream (once per run: it is a
no-op for a table already seeded) and writes every item of :func:`bench.workloads.dataset`
into it with BatchWriteItem, retrying unprocessed items; :func:`warm` reads the whole data
set once through a target (BatchGetItem of 100 keys, or every Query page), which fills a
daxproxy's caches before a warm run; :func:`first_answer` returns the exact bytes a server
answers to the workload's first read, after :func:`check` found them right (every item asked
for, of the workload's size): each target is checked so before it is measured, and the
constant server then sends those bytes to every request (the ceiling answers with a body of
the same size as the real one). :func:`post` is one
request with http.client. :class:`DataError` says what went wrong. Seeding passes dummy
credentials and never reads an AWS profile.
"""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from bench.workloads import (
    BATCH,
    QUERY,
    READ,
    Workload,
    dataset,
    key_schema,
    stream,
    warm_bodies,
)
from bench.workloads import (
    headers as request_headers,
)

REGION = "us-east-1"
SEED_THREADS = 4
_RETRIES = 20


class DataError(RuntimeError):
    pass


def post(url: str, operation: str, body: str | bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("POST", "/", body=body, headers=request_headers(operation))
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 10, "mode": "standard"}, max_pool_connections=8),
    )


def seed(upstream_url: str, workload: Workload, seeded: set[str]) -> int:
    """Create and fill the workload's table unless ``seeded`` names it; the items written."""
    if workload.table in seeded:
        return 0
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(upstream_url)
    try:
        _create(client, workload)
        chunks: list[list[dict[str, Any]]] = []
        for n, item in enumerate(dataset(workload)):
            if n % 25 == 0:
                chunks.append([])
            chunks[-1].append(item)
        with ThreadPoolExecutor(SEED_THREADS) as pool:
            list(pool.map(lambda chunk: _write(client, workload.table, chunk), chunks))
    except (BotoCoreError, ClientError) as exc:
        raise DataError(f"could not seed {workload.table} in {upstream_url}: {exc}") from None
    seeded.add(workload.table)
    return sum(len(c) for c in chunks)


def _create(client: Any, workload: Workload) -> None:
    create_table(client, workload.table, key_schema(workload))


def create_table(client: Any, table: str, keys: tuple[str, ...]) -> None:
    """An on-demand table whose key attributes (hash, then range) are all strings."""
    client.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": name, "KeyType": kind}
            for name, kind in zip(keys, ("HASH", "RANGE"), strict=False)
        ],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(
        TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )


def _write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    requests = {table: [{"PutRequest": {"Item": item}} for item in items]}
    for attempt in range(_RETRIES):
        left = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
        if not left:
            return
        requests = left
        time.sleep(0.05 * (attempt + 1))
    raise DataError(f"{table}: items left unprocessed after {_RETRIES} attempts")


def warm(url: str, workload: Workload) -> int:
    """Read every item once through ``url``; the requests sent."""
    sent = 0
    for operation, body in warm_bodies(workload):
        pending: str | None = body
        for _ in range(_RETRIES):
            if pending is None:
                break
            status, answer = post(url, operation, pending)
            sent += 1
            if status != 200:
                raise DataError(f"warming {url}: {operation} answered {status}: {answer[:300]!r}")
            left = json.loads(answer).get("UnprocessedKeys") if operation == "BatchGetItem" else 0
            pending = json.dumps({"RequestItems": left}) if left else None
        else:
            raise DataError(f"warming {url}: keys left unprocessed after {_RETRIES} attempts")
    return sent


def first_answer(url: str, workload: Workload) -> bytes:
    """The bytes ``url`` answers to the workload's first read, once :func:`check` found
    them right: status 200 and every item asked for, each ``item_bytes`` long."""
    _, payload = next(r for r in stream(workload, "bench", 64) if r[0] == READ)
    head, _, body = payload.partition(b"\r\n\r\n")
    target = next(
        line.split(b".", 1)[1].decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-amz-target:")
    )
    status, answer = post(url, target, body)
    if status != 200:
        raise DataError(f"{url} answered {target} with {status}: {answer[:300]!r}")
    check(url, workload, answer)
    return answer


def check(url: str, workload: Workload, answer: bytes) -> None:
    """DataError unless ``answer`` holds the items a read of the workload must return."""
    try:
        document = json.loads(answer)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise DataError(f"{url} answered with no JSON object: {answer[:300]!r}")
    if workload.operation == QUERY:
        items = document.get("Items") or []
    elif workload.operation == BATCH:
        items = (document.get("Responses") or {}).get(workload.table) or []
    else:
        items = [document["Item"]] if "Item" in document else []
    wanted = min(workload.items_per_read, workload.keys)
    sizes = {len(json.dumps(i, separators=(",", ":"))) for i in items}
    if len(items) != wanted or any(abs(n - workload.item_bytes) > 2 for n in sizes):
        raise DataError(
            f"{url} answered {workload.name}'s first read with {len(items)} items of "
            f"{sorted(sizes)} bytes, not {wanted} of {workload.item_bytes}: {answer[:300]!r}"
        )
