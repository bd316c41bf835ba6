"""The service layer's own CPU per request, in process: ``python -m bench.inprocess``.

Contract: each scenario sends one request shape through :meth:`Proxy.handle` (built by
``runtime.build_proxy`` with its metrics, as the server builds it) over and over on one
task, with a fake upstream that answers from prepared bytes, and reports CPU time per call
(``time.process_time``, the best of ``--repeats`` timed loops of about ``--seconds`` each),
in microseconds. The hit scenarios are warmed first, so every timed call is a hit; ``*_miss``
uses a fresh key per call; ``get_1k_consistent`` is a ConsistentRead GetItem, forwarded with
no cache work (beside ``put_1k``: what a write-through adds to a forward); ``*_http`` send
through the real :class:`HttpUpstream` (aiohttp, SigV4) to a local aiohttp server in a child
process that answers each operation with fixed bytes (that server's CPU is not counted).

``--code DIR`` (repeatable, ``label=DIR``) measures several checkouts of daxproxy side by
side: each round runs one child process per checkout, alternately, with ``DIR`` first on
``sys.path``; the table keeps each scenario's best over ``--rounds`` rounds. ``--linked
LABEL`` links that checkout's proxy to a change hub in its process (with a second link on
it), as one worker of several is (:mod:`daxproxy.workers.channel`: the checkout must have
it). Without ``--code``, the working tree is measured. ``--profile SCENARIO`` prints
cProfile's top functions instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

TARGET = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"

# Tables of the fake upstream: "t" and "big" keyed by a string, "n" by a string and a number.
_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "t": (("pk", "S"),),
    "big": (("pk", "S"),),
    "n": (("pk", "S"), ("sk", "N")),
    "q": (("pk", "S"), ("sk", "S")),
}


def _item(key: dict[str, Any], size: int) -> dict[str, Any]:
    """An item of about ``size`` bytes of JSON, of mixed types as real items are."""
    base: dict[str, Any] = {
        **key,
        "name": {"S": "in-process benchmark item"},
        "count": {"N": "42"},
        "price": {"N": "19.99"},
        "active": {"BOOL": True},
        "tags": {"L": [{"S": "bench"}, {"S": "inprocess"}, {"N": "7"}]},
        "address": {"M": {"city": {"S": "Paris"}, "zip": {"S": "75001"}}},
    }
    pad = size - len(orjson.dumps(base)) - len(',"payload":{"S":""}')
    base["payload"] = {"S": "x" * max(pad, 0)}
    return base


ITEM_1K = _item({"pk": {"S": "item-1"}}, 1024)
ITEM_1K_N = _item({"pk": {"S": "item-1"}, "sk": {"N": "12345"}}, 1024)
ITEM_400K = _item({"pk": {"S": "item-1"}}, 400 * 1024 - 100)
BATCH_KEYS = [{"pk": {"S": f"batch-{n:03d}"}} for n in range(100)]
BATCH_ITEMS = [_item(k, 1024) for k in BATCH_KEYS]
QUERY_ITEMS = [_item({"pk": {"S": "part-1"}, "sk": {"S": f"s{n:03d}"}}, 1024) for n in range(10)]


def _description(name: str) -> bytes:
    schema = _TABLES[name]
    return orjson.dumps(
        {
            "Table": {
                "TableName": name,
                "TableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}",
                "TableId": f"id-{name}",
                "TableStatus": "ACTIVE",
                "KeySchema": [
                    {"AttributeName": a, "KeyType": k}
                    for (a, _), k in zip(schema, ("HASH", "RANGE"), strict=False)
                ],
                "AttributeDefinitions": [
                    {"AttributeName": a, "AttributeType": t} for a, t in schema
                ],
            }
        }
    )


# What the fake upstream answers, by operation (and by table where it matters).
ANSWERS: dict[str, bytes] = {
    **{f"DescribeTable:{t}": _description(t) for t in _TABLES},
    "GetItem:t": orjson.dumps({"Item": ITEM_1K}),
    "GetItem:n": orjson.dumps({"Item": ITEM_1K_N}),
    "GetItem:big": orjson.dumps({"Item": ITEM_400K}),
    "BatchGetItem": orjson.dumps({"Responses": {"t": BATCH_ITEMS}, "UnprocessedKeys": {}}),
    "Query": orjson.dumps({"Items": QUERY_ITEMS, "Count": 10, "ScannedCount": 10}),
    "PutItem": b"{}",
}


def answer_for(operation: str, body: bytes) -> bytes:
    if operation in ("DescribeTable", "GetItem"):
        for table in ("big", "n", "t", "q"):
            if b'"TableName":"' + table.encode() + b'"' in body:
                return ANSWERS[f"{operation}:{table}"]
    return ANSWERS[operation]


def _response_headers(body: bytes) -> list[tuple[str, str]]:
    return [
        ("Server", "Server"),
        ("Date", "Thu, 01 Jan 2026 00:00:00 GMT"),
        ("Content-Type", CONTENT_TYPE),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive"),
        ("x-amzn-RequestId", "UPSTREAM" + "0" * 44),
        ("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF)),
    ]


_HEADERS = {body: _response_headers(body) for body in ANSWERS.values()}


def _client_headers(operation: str, body: bytes) -> tuple[tuple[str, str], ...]:
    """What an SDK (botocore) sends, as the edge hands them over."""
    return (
        ("Host", "127.0.0.1:8111"),
        ("Accept-Encoding", "identity"),
        ("X-Amz-Target", TARGET + operation),
        ("Content-Type", CONTENT_TYPE),
        ("User-Agent", "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux lang/python#3.11.9"),
        ("X-Amz-Date", "20260101T000000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
        ),
        ("amz-sdk-invocation-id", "5f2e0a4c-7b7e-4c57-9a5e-3d1f2a6b9c11"),
        ("amz-sdk-request", "attempt=1; max=3"),
        ("Content-Length", str(len(body))),
    )


# Scenarios ---------------------------------------------------------------------------------

Payload = dict[str, Any]


def _get(table: str, key: Payload, **more: Any) -> Payload:
    return {"TableName": table, "Key": key, **more}


# name -> (operation, payloads: one, or a function of the call's index for fresh keys, warm?)
SCENARIOS: dict[str, tuple[str, Payload | Callable[[int], Payload], bool]] = {
    "get_1k_hit": ("GetItem", _get("t", {"pk": {"S": "item-1"}}), True),
    "get_1k_numkey_hit": (
        "GetItem",
        _get("n", {"pk": {"S": "item-1"}, "sk": {"N": "12345"}}),
        True,
    ),
    "get_400k_hit": ("GetItem", _get("big", {"pk": {"S": "item-1"}}), True),
    "get_projection_hit": (
        "GetItem",
        _get(
            "t",
            {"pk": {"S": "item-1"}},
            ProjectionExpression="#n, price, address.city",
            ExpressionAttributeNames={"#n": "name"},
        ),
        True,
    ),
    "get_capacity_hit": (
        "GetItem",
        _get("t", {"pk": {"S": "item-1"}}, ReturnConsumedCapacity="TOTAL"),
        True,
    ),
    "batch_100_hit": ("BatchGetItem", {"RequestItems": {"t": {"Keys": BATCH_KEYS}}}, True),
    "query_page_hit": (
        "Query",
        {
            "TableName": "q",
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "part-1"}},
        },
        True,
    ),
    "get_1k_miss": ("GetItem", lambda i: _get("t", {"pk": {"S": f"miss-{i}"}}), False),
    "put_1k": ("PutItem", {"TableName": "t", "Item": ITEM_1K}, False),
    "get_1k_consistent": (
        "GetItem",
        _get("t", {"pk": {"S": "item-1"}}, ConsistentRead=True),
        False,
    ),
    "batch_consistent": (
        "BatchGetItem",
        {"RequestItems": {"t": {"Keys": BATCH_KEYS, "ConsistentRead": True}}},
        False,
    ),
}
HTTP_SCENARIOS = {
    "get_1k_miss_http": SCENARIOS["get_1k_miss"],
    "put_1k_http": SCENARIOS["put_1k"],
    "get_1k_consistent_http": SCENARIOS["get_1k_consistent"],
}


_FRESH = itertools.count()


class FakeUpstream:
    """Answers from :data:`ANSWERS`, never suspending."""

    def __init__(self, response: Callable[..., Any]) -> None:
        self._response = response

    async def send(self, target: Any, body: bytes, headers: Any, *, retry_safe: bool) -> Any:
        answer = answer_for(target.operation, body)
        return self._response(200, _HEADERS[answer], answer)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def _requests(
    client_request: Any, operation: str, payload: Payload | Callable[[int], Payload], count: int
) -> list[Any]:
    if callable(payload):  # a fresh key for every call of the process
        bodies = [orjson.dumps(payload(next(_FRESH))) for _ in range(count)]
    else:
        bodies = [orjson.dumps(payload)] * count
    return [
        client_request(_client_headers(operation, b), b, TARGET + operation, None, "/")
        for b in bodies
    ]


async def _measure(
    name: str,
    scenario: tuple[str, Any, bool],
    seconds: float,
    repeats: int,
    http_url: str | None,
    *,
    linked: bool = False,
) -> float:
    from daxproxy.core.config import Settings
    from daxproxy.service.proxy import ClientRequest
    from daxproxy.service.runtime import build_proxy
    from daxproxy.service.upstream import UpstreamResponse

    operation, payload, warm = scenario
    settings = Settings(upstream="http://127.0.0.1:1", item_cache_max_bytes=2**31)
    upstream: Any = FakeUpstream(UpstreamResponse) if http_url is None else _http_upstream(http_url)
    channel = contextlib.AsyncExitStack()
    try:
        if linked:
            proxy = build_proxy(settings, upstream, changes=await _link(channel))
        else:
            proxy = build_proxy(settings, upstream)
        (first,) = _requests(ClientRequest, operation, payload, 1)
        for _ in range(3 if warm else 1):
            answer = await proxy.handle(first)
            assert answer.status == 200, (name, answer.status, answer.body[:300])
        if warm:
            label = dict(answer.headers).get("x-daxproxy-cache")
            assert label == "hit", (name, label)
        # Calibrate: how many calls take about ``seconds``.
        count, spent = 8, 0.0
        while True:
            batch = _requests(ClientRequest, operation, payload, count)
            spent = await _timed(proxy, batch)
            if spent >= seconds / 4 or count >= 1 << 20:
                break
            count *= 2
        count = max(8, int(count * seconds / max(spent, 1e-9)))
        best = float("inf")
        for _ in range(repeats):
            batch = _requests(ClientRequest, operation, payload, count)
            best = min(best, await _timed(proxy, batch) / count)
        return best * 1e6
    finally:
        await upstream.close()
        await channel.aclose()


async def _link(stack: contextlib.AsyncExitStack) -> Any:
    """A link to a change hub in this process, with another worker's link on it."""
    from daxproxy.workers.channel import ChangeHub, ChangeLink

    directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="daxproxy-bench-"))
    hub = ChangeHub(os.path.join(directory, "changes"))
    await hub.start()
    stack.push_async_callback(hub.close)
    other = await ChangeLink.connect(hub.path, 2)
    stack.push_async_callback(other.close)
    link = await ChangeLink.connect(hub.path, 1)
    stack.push_async_callback(link.close)
    return link


async def _timed(proxy: Any, batch: list[Any]) -> float:
    handle = proxy.handle
    started = time.process_time()
    for request in batch:
        await handle(request)
    return time.process_time() - started


def _http_upstream(url: str) -> Any:
    from daxproxy.core.config import resolve_endpoints
    from daxproxy.service.signing import LOCAL_CREDENTIALS, Signer, StaticCredentials
    from daxproxy.service.upstream import HttpUpstream

    return HttpUpstream(
        resolve_endpoints(url, "us-east-1"),
        Signer(StaticCredentials(LOCAL_CREDENTIALS), "us-east-1"),
        connect_timeout=2.0,
        request_timeout=10.0,
        max_connections=8,
    )


# The local upstream for the *_http scenarios ----------------------------------------------


def serve(port: int) -> None:
    from aiohttp import web

    prepared = {body: dict(_response_headers(body)[2:]) for body in ANSWERS.values()}
    for headers in prepared.values():
        del headers["Content-Length"], headers["Connection"]

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        operation = request.headers["X-Amz-Target"].partition(".")[2]
        out = answer_for(operation, body)
        return web.Response(body=out, headers=prepared[out])

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{path:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the local upstream did not start")


# Child and parent ---------------------------------------------------------------------------


def child(
    names: Sequence[str], seconds: float, repeats: int, http_url: str | None, linked: bool
) -> None:
    out = {}
    for name in names:
        scenario = SCENARIOS.get(name) or HTTP_SCENARIOS[name]
        url = http_url if name in HTTP_SCENARIOS else None
        out[name] = asyncio.run(_measure(name, scenario, seconds, repeats, url, linked=linked))
    print(json.dumps(out))


def profile(name: str, seconds: float, http_url: str | None) -> None:
    import cProfile
    import pstats

    scenario = SCENARIOS.get(name) or HTTP_SCENARIOS[name]
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_measure(name, scenario, seconds, 1, http_url))
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--scenario", action="append", default=[], help="default: all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--no-http", action="store_true", help="skip the *_http scenarios")
    parser.add_argument("--profile", metavar="SCENARIO")
    parser.add_argument("--linked", action="append", default=[], metavar="LABEL")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    names = args.scenario or [*SCENARIOS, *([] if args.no_http else HTTP_SCENARIOS)]
    if args.child:
        child(names, args.seconds, args.repeats, args.url, bool(args.linked))
        return 0
    server = None
    url = None
    # The local upstream only for a *_http scenario (a profile runs its one scenario only).
    if any(n in HTTP_SCENARIOS for n in ([args.profile] if args.profile else names)):
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "bench.inprocess", "--serve", str(port)])
        url = f"http://127.0.0.1:{port}"
        _wait_for(port)
    try:
        if args.profile:
            profile(args.profile, args.seconds * 3, url)
            return 0
        return _compare(args, names, url)
    finally:
        if server is not None:
            server.terminate()
            server.wait()


def _compare(args: argparse.Namespace, names: Sequence[str], url: str | None) -> int:
    codes = [c.partition("=")[::2] for c in args.code] or [("tree", str(Path.cwd()))]
    best: dict[str, dict[str, float]] = {label: {} for label, _ in codes}
    for round_ in range(args.rounds):
        for label, directory in codes:
            command = [
                sys.executable,
                "-c",
                # This tree's bench (from the working directory), then DIR's daxproxy.
                "import sys; from bench.inprocess import main; "
                f"sys.path.insert(0, {str(Path(directory).resolve())!r}); main(sys.argv[1:])",
                "--child",
                f"--seconds={args.seconds}",
                f"--repeats={args.repeats}",
                *(f"--scenario={n}" for n in names),
                *([f"--url={url}"] if url else []),
                *([f"--linked={label}"] if label in args.linked else []),
            ]
            root = Path(__file__).resolve().parent.parent
            done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            for name, value in json.loads(done.stdout.splitlines()[-1]).items():
                best[label][name] = min(best[label].get(name, float("inf")), value)
            print(f"round {round_ + 1}: {label} done", file=sys.stderr)
    labels = [label for label, _ in codes]
    print(f"CPU µs per call, best of {args.rounds} rounds x {args.repeats} loops")
    print("| scenario | " + " | ".join(labels) + (" | ratio |" if len(labels) == 2 else " |"))
    print("|---" * (len(labels) + 1 + (len(labels) == 2)) + "|")
    for name in names:
        values = [best[label][name] for label in labels]
        cells = " | ".join(f"{v:,.1f}" for v in values)
        ratio = f" | {values[1] / values[0]:.2f} |" if len(values) == 2 else " |"
        print(f"| {name} | {cells}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
