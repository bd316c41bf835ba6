"""Fuzzing the edge: malformed requests never crash the proxy or put a traceback on the wire.

Hypothesis throws raw HTTP requests at one real proxy process in front of the suite's moto
server: random bytes, truncated, deeply nested and oversized JSON, request shapes of the
cached operations (GetItem, BatchGetItem, Query, Scan, PutItem, UpdateItem, DeleteItem,
BatchWriteItem, TransactWriteItems, ExecuteStatement) with wrong types and invalid
AttributeValues ({"S": 1}, {"N": "abc"}, {"B": "not base64"}, {}, unknown keys), random
``X-Amz-Target`` values, and odd headers (a gzip ``Content-Encoding`` over a body that is
not gzip, odd content types, a ``Content-Length`` shorter than the body). After each:

- every answer is either a success with a JSON object body or a DynamoDB-shaped error
  (status 400 to 599, a JSON body with string ``__type`` and ``message``); never a
  traceback, never a 5xx the proxy made itself (``InternalServerError``) for the client's
  mistake;
- the process is still up, and a valid GetItem right after (one through the item cache,
  one ConsistentRead, which goes upstream) returns the right item.

The check item lives in a table whose name no example can produce, and no example's target
is a table operation that could drop it (DeleteTable, UpdateTable, ...). Where the proxy
relays moto's own answer (an HTML 500, a 2011-API error without a message), the same bytes
sent straight to moto must get the same status: moto's faults are not the proxy's.

Fixed examples add framing faults (bodies over the limit, a gzip bomb, bad lengths, an
unknown ``Expect``) and attribute values nested 40, 200 and 900 levels deep. The default run
is derandomized (300 examples, about 15 s); ``FUZZ_EXAMPLES=5000`` makes a longer random hunt.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daxproxy.core.wire import UNDECODABLE_MESSAGE
from daxproxy.service.embedded import MotoServer
from tests.integration.conftest import Endpoints
from tests.integration.harness import NO_RETRIES, PK_SK_TABLE, REGION, ProxyProcess, running_proxy
from tests.signing import sigv4_headers

# A longer, random hunt: FUZZ_EXAMPLES=5000 pytest tests/integration/test_fuzz.py
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
MAX_BODY = 64 * 1024
FUZZ_TABLE = f"fuzz-{uuid.uuid4().hex[:8]}"
CHECK_TABLE = f"fuzz-check-{uuid.uuid4().hex}"
CHECK_KEY = {"pk": {"S": "check"}, "sk": {"N": "1"}}
CHECK_ITEM = {**CHECK_KEY, "payload": {"S": "still here"}, "n": {"N": "7"}}
PREFIX = "DynamoDB_20120810"


@dataclass
class Fuzzed:
    proxy: ProxyProcess
    client: Any  # boto3's, through the proxy
    upstream_port: int  # the moto server behind it
    # Examples answered with a 5xx or an error not in DynamoDB's shape that moto gives too,
    # to the same bytes sent to it straight: moto's faults, relayed as the proxy relays all.
    upstream_faults: list[bytes] = field(default_factory=list, repr=False)


@pytest.fixture(scope="module")
def fuzzed(endpoints: Endpoints) -> Iterator[Fuzzed]:
    with fuzzed_proxy(endpoints.upstream) as state:
        yield state


@contextlib.contextmanager
def fuzzed_proxy(upstream: str) -> Iterator[Fuzzed]:
    """The fuzzed proxy in front of ``upstream``, with the fuzz and check tables made."""
    with running_proxy(
        "--upstream",
        upstream,
        "--max-body-bytes",
        str(MAX_BODY),
        "--client-read-timeout-millis",
        "2000",
    ) as proxy:
        client = boto3.client(
            "dynamodb", endpoint_url=proxy.url, region_name=REGION, config=NO_RETRIES
        )
        for table in (FUZZ_TABLE, CHECK_TABLE):
            client.create_table(TableName=table, **PK_SK_TABLE)
        client.put_item(TableName=CHECK_TABLE, Item=CHECK_ITEM)
        client.put_item(TableName=FUZZ_TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
        state = Fuzzed(proxy, client, urlsplit(upstream).port or 80)
        yield state
        if state.upstream_faults:
            print(f"\nmoto's own answers relayed for {len(state.upstream_faults)} requests:")
            for raw in state.upstream_faults[:5]:
                print("   ", raw[-200:])
        # No 500 of the proxy's own: not one fault logged.
        assert "Traceback (most recent call last):" not in proxy.log()


# Strategies ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(["abc", "", "1e999", "-0", "NaN", "Infinity", "0x10", " 1", "1.", ".5"]),
)
b64 = st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
good_values = st.recursive(
    st.one_of(
        st.text(max_size=12).map(lambda s: {"S": s}),
        numbers.map(lambda n: {"N": n}),
        b64.map(lambda s: {"B": s}),
        st.booleans().map(lambda b: {"BOOL": b}),
        st.just({"NULL": True}),
        st.lists(st.text(max_size=5), max_size=3).map(lambda v: {"SS": v}),
        st.lists(numbers, max_size=3).map(lambda v: {"NS": v}),
        st.lists(b64, max_size=3).map(lambda v: {"BS": v}),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(st.text(max_size=5), inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=6,
)
bad_values = st.one_of(
    st.sampled_from(
        [
            {"S": 1},
            {"N": "abc"},
            {"N": 5},
            {"B": "not base64!"},
            {"B": 7},
            {},
            {"S": "a", "N": "1"},
            {"X": "y"},
            {"NULL": False},
            {"NULL": "yes"},
            {"BOOL": "yes"},
            {"SS": []},
            {"SS": ["a", "a"]},
            {"NS": ["x"]},
            {"L": "not a list"},
            {"M": []},
            {"M": {"a": {"S": 1}}},
            {"L": [{"N": "x"}]},
            "S",
            None,
            [],
        ]
    ),
    json_values,
)
attribute_values = st.one_of(good_values, bad_values)
names = st.one_of(
    st.sampled_from([FUZZ_TABLE, "no-such-table", "", "a" * 300, "bad name!", "x"]),
    st.text(max_size=12),
    json_values,
)
keys = st.one_of(
    st.fixed_dictionaries({"pk": attribute_values, "sk": attribute_values}),
    st.fixed_dictionaries({"pk": st.just({"S": "a"}), "sk": attribute_values}),
    st.dictionaries(st.text(max_size=6), attribute_values, max_size=3),
    json_values,
)
items = st.one_of(
    st.fixed_dictionaries(
        {"pk": attribute_values, "sk": attribute_values},
        optional={"a": attribute_values, "b": attribute_values},
    ),
    keys,
)
expressions = st.one_of(
    st.sampled_from(
        [
            "pk = :v",
            "pk = :v AND sk > :w",
            "#n = :v",
            "begins_with(sk, :v)",
            "SET #n = :v",
            "SET a = a + :v",
            "REMOVE a",
            "ADD n :v",
            "DELETE s :v",
            "pk, sk, a.b[1]",
            "attribute_exists(pk)",
            "size(a) > :v",
            "",
            "pk =",
            "((((",
            "a[999999999999]",
            "#",
            ":",
        ]
    ),
    st.text(max_size=30),
    json_values,
)
value_maps = st.one_of(
    st.dictionaries(st.sampled_from([":v", ":w", "v", ""]), attribute_values, max_size=3),
    json_values,
)
name_maps = st.one_of(
    st.dictionaries(st.sampled_from(["#n", "n", ""]), st.text(max_size=6), max_size=2),
    json_values,
)
extras = st.dictionaries(
    st.sampled_from(["Unknown", "ConsistentRead", "Limit", "Select", "ReturnValues", "IndexName"]),
    json_values,
    max_size=2,
)


def shape(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda fixed, extra: {**fixed, **extra},
        st.fixed_dictionaries(required, optional=optional),
        extras,
    )


table_reads = {"ProjectionExpression": expressions, "ExpressionAttributeNames": name_maps}
conditions = {
    "ConditionExpression": expressions,
    "ExpressionAttributeNames": name_maps,
    "ExpressionAttributeValues": value_maps,
}
get_item = shape({"TableName": names, "Key": keys}, table_reads)
put = shape({"TableName": names, "Item": items}, conditions)
update = shape({"TableName": names, "Key": keys}, {"UpdateExpression": expressions, **conditions})
delete = shape({"TableName": names, "Key": keys}, conditions)
query = shape(
    {"TableName": names},
    {
        "KeyConditionExpression": expressions,
        "FilterExpression": expressions,
        "ExpressionAttributeValues": value_maps,
        "ExclusiveStartKey": keys,
        "ScanIndexForward": json_values,
        **table_reads,
    },
)
scan = shape(
    {"TableName": names},
    {
        "FilterExpression": expressions,
        "ExpressionAttributeValues": value_maps,
        "Segment": json_values,
        "TotalSegments": json_values,
        "ExclusiveStartKey": keys,
        **table_reads,
    },
)
batch_get = shape(
    {
        "RequestItems": st.one_of(
            st.dictionaries(
                names.filter(lambda n: isinstance(n, str)),
                shape({"Keys": st.lists(keys, max_size=3)}, table_reads),
                max_size=2,
            ),
            json_values,
        )
    },
    {},
)
batch_write = shape(
    {
        "RequestItems": st.one_of(
            st.dictionaries(
                names.filter(lambda n: isinstance(n, str)),
                st.lists(
                    st.one_of(
                        st.fixed_dictionaries(
                            {"PutRequest": st.fixed_dictionaries({"Item": items})}
                        ),
                        st.fixed_dictionaries(
                            {"DeleteRequest": st.fixed_dictionaries({"Key": keys})}
                        ),
                        json_values,
                    ),
                    max_size=3,
                ),
                max_size=2,
            ),
            json_values,
        )
    },
    {},
)
transact_write = shape(
    {
        "TransactItems": st.one_of(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({"Put": put}),
                    st.fixed_dictionaries({"Update": update}),
                    st.fixed_dictionaries({"Delete": delete}),
                    st.fixed_dictionaries({"ConditionCheck": delete}),
                    json_values,
                ),
                max_size=3,
            ),
            json_values,
        )
    },
    {"ClientRequestToken": json_values},
)
statement = shape(
    {
        "Statement": st.one_of(
            st.sampled_from(
                [
                    f'SELECT * FROM "{FUZZ_TABLE}" WHERE pk = ?',
                    f'SELECT a, b FROM "{FUZZ_TABLE}" WHERE pk = ? AND sk = ?',
                    f"INSERT INTO \"{FUZZ_TABLE}\" VALUE {{'pk': ?, 'sk': ?}}",
                    f'UPDATE "{FUZZ_TABLE}" SET a = ? WHERE pk = ? AND sk = ?',
                    f'DELETE FROM "{FUZZ_TABLE}" WHERE pk = ? AND sk = ?',
                    'SELECT * FROM "no-such-table"',
                    "SELECT",
                    "",
                ]
            ),
            st.text(max_size=40),
            json_values,
        )
    },
    {"Parameters": st.one_of(st.lists(attribute_values, max_size=3), json_values)},
)
OPERATIONS: dict[str, st.SearchStrategy[Any]] = {
    "GetItem": get_item,
    "BatchGetItem": batch_get,
    "Query": query,
    "Scan": scan,
    "PutItem": put,
    "UpdateItem": update,
    "DeleteItem": delete,
    "BatchWriteItem": batch_write,
    "TransactWriteItems": transact_write,
    "ExecuteStatement": statement,
}


def nested(depth: int) -> bytes:
    return b'{"TableName": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


@st.composite
def requests(draw: st.DrawFn) -> tuple[str | None, bytes, list[tuple[str, str]]]:
    """(X-Amz-Target, the body, extra headers)."""
    operation = draw(st.sampled_from(sorted(OPERATIONS)))
    target = draw(
        st.one_of(
            st.just(f"{PREFIX}.{operation}"),
            st.just(f"{PREFIX}.{operation}"),
            st.sampled_from(
                [
                    None,
                    "",
                    PREFIX,
                    f"{PREFIX}.",
                    f"{PREFIX}.NoSuchOperation",
                    f"DynamoDB_20111205.{operation}",
                    f"DynamoDBStreams_20120810.{operation}",
                    f" {PREFIX}.{operation} ",
                    f"{PREFIX.lower()}.{operation}",
                    operation,
                ]
            ),
            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
        )
    )
    payload = draw(OPERATIONS[operation])
    body_kind = draw(
        st.sampled_from(["shape", "shape", "shape", "truncated", "bytes", "other-json", "nested"])
    )
    encoded = orjson.dumps(payload) if body_kind != "other-json" else b""
    if body_kind == "truncated":
        encoded = encoded[: draw(st.integers(0, max(len(encoded) - 1, 0)))]
    elif body_kind == "bytes":
        encoded = draw(st.binary(max_size=200))
    elif body_kind == "other-json":
        encoded = json.dumps(draw(json_values)).encode()
    elif body_kind == "nested":
        encoded = nested(draw(st.sampled_from([10, 600, 2000, 100_000])))
    headers = []
    coding = draw(st.sampled_from([None, None, None, "gzip", "gzip-body", "deflate", "br", "x"]))
    if coding == "gzip-body":
        encoded = gzip.compress(encoded)
        headers.append(("Content-Encoding", "gzip"))
    elif coding is not None:
        headers.append(("Content-Encoding", coding))
    content_type = draw(
        st.sampled_from(["application/x-amz-json-1.0", "text/plain", "", "application/json"])
    )
    if content_type:
        headers.append(("Content-Type", content_type))
    if draw(st.booleans()):
        headers.append(
            (
                draw(st.sampled_from(["X-Odd", "Authorization", "Accept-Encoding", "Expect"])),
                draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)),
            )
        )
    return target, encoded, headers


# Raw HTTP --------------------------------------------------------------------------------


def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw``, and read until the proxy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # The proxy may answer and close before taking it all (a body too large). No
        # half-close after: asyncio's server closes the connection on it at once.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def request_bytes(
    target: str | None, body: bytes, headers: list[tuple[str, str]], short_length: bool = False
) -> bytes:
    lines = ["POST / HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if target is not None:
        lines.append(f"X-Amz-Target: {target}")
    lines += [f"{name}: {value}" for name, value in headers]
    length = max(len(body) - 3, 0) if short_length else len(body)
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Each HTTP answer in ``raw``, in order."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, raw[:300]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert "chunked" not in headers.get("transfer-encoding", ""), head
        length = int(headers["content-length"])
        out.append((int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


# moto's server routes a request to a service by the scope of its signature (S3 without
# one); the proxy signs what it sends upstream, so the same request sent straight to moto
# carries a signature for DynamoDB too. moto does not check it.
FAKE_SIGNATURE = (
    b"Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/dynamodb/"
    b"aws4_request, SignedHeaders=host, Signature=00"
)


def as_signed(raw: bytes) -> bytes:
    """``raw`` as the proxy forwards it: signed, and its ``X-Amz-Target`` stripped of the
    blanks around it (the proxy sends the target it parsed, not the header as it came: a
    padded target gets moto's 500 through the proxy and its 404 straight)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"authorization:")]
    lines = [
        b"X-Amz-Target: " + x.partition(b":")[2].strip()
        if x.lower().startswith(b"x-amz-target:")
        else x
        for x in lines
    ]
    return b"\r\n".join([*lines, FAKE_SIGNATURE]) + b"\r\n\r\n" + body


def is_dynamodb_error(body: bytes) -> bool:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(document, dict)
        and isinstance(document.get("__type"), str)
        and isinstance(document.get("message", document.get("Message")), str)
    )


def check_answers(state: Fuzzed, raw: bytes, got: list[tuple[int, dict[str, str], bytes]]) -> None:
    assert got, "no answer"
    for status, _, body in got:
        assert b"Traceback" not in body
        if 200 <= status < 300:
            assert isinstance(orjson.loads(body), dict), body[:300]
            continue
        assert 400 <= status <= 599, body[:300]
        if not is_dynamodb_error(body):
            # Not the proxy's (its own errors are always DynamoDB-shaped): moto's, relayed,
            # such as its HTML 500 pages, or its 2011-API errors without a message.
            straight = answers(exchange(state.upstream_port, as_signed(raw)))
            assert straight and straight[0][0] == status, (body[:300], straight)
            state.upstream_faults.append(raw)
            continue
        error = orjson.loads(body)
        if error["__type"].endswith("#InternalServerError"):
            # The one 500 of the proxy's own: a body its Content-Encoding cannot undo, as
            # DynamoDB answers it (observed on DynamoDB, issue 13).
            assert error["message"].startswith(UNDECODABLE_MESSAGE), body[:300]
            assert b"\r\ncontent-encoding:" in raw.lower(), body[:300]
            continue
        assert "InternalServerError" not in error["__type"], body[:300]


def check_still_serving(state: Fuzzed) -> None:
    process = state.proxy.process
    assert process is not None and process.poll() is None, state.proxy.log()
    for consistent in (False, True):
        got = state.client.get_item(TableName=CHECK_TABLE, Key=CHECK_KEY, ConsistentRead=consistent)
        assert got["Item"] == CHECK_ITEM


@settings(
    max_examples=EXAMPLES or 300,
    deadline=None,
    derandomize=not EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests(), short_length=st.sampled_from([False, False, False, True]))
def test_malformed_requests_get_dynamodb_errors_and_the_proxy_keeps_serving(
    fuzzed: Fuzzed,
    request: tuple[str | None, bytes, list[tuple[str, str]]],
    short_length: bool,
) -> None:
    target, body, headers = request
    raw = request_bytes(target, body, headers, short_length)
    check_answers(fuzzed, raw, answers(exchange(fuzzed.proxy.port, raw)))
    check_still_serving(fuzzed)


FRAMING_FAULTS = {
    "body-over-limit": request_bytes(f"{PREFIX}.GetItem", b"{" * (MAX_BODY + 10), []),
    "string-over-limit": request_bytes(
        f"{PREFIX}.PutItem", b'{"TableName": "' + b"a" * MAX_BODY + b'"}', []
    ),
    "gzip-bomb": request_bytes(
        f"{PREFIX}.GetItem",
        gzip.compress(b" " * (MAX_BODY * 4)),
        [("Content-Encoding", "gzip")],
    ),
    "content-length-short": request_bytes(
        f"{PREFIX}.GetItem", b'{"TableName": "x"}', [], short_length=True
    ),
    "non-ascii-target": (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: \xff\xfe\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}"
    ),
    "negative-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
    "non-numeric-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    "huge-chunk": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"
    ),
    "put-method": (
        b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    ),
    "expect-junk": request_bytes(f"{PREFIX}.ListTables", b"{}", [("Expect", "junk")]),
    "nul-in-path": b"POST /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-9": b"POST / HTTP/9.9\r\nHost: x\r\n\r\n",
    "tls-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.mark.parametrize("raw", FRAMING_FAULTS.values(), ids=FRAMING_FAULTS.keys())
def test_framing_faults_get_dynamodb_errors(fuzzed: Fuzzed, raw: bytes) -> None:
    got = answers(exchange(fuzzed.proxy.port, raw))
    assert got and all(400 <= status <= 499 for status, _, _ in got), got
    check_answers(fuzzed, raw, got)
    check_still_serving(fuzzed)


def deep(depth: int) -> str:
    """An attribute value nested ``depth`` lists deep, as JSON text (orjson writes 254 at most;
    DynamoDB accepts 32, moto more)."""
    return '{"L":[' * depth + '{"S":"x"}' + "]}" * depth


def body_of(template: str, depth: int) -> bytes:
    return template.replace("TABLE", FUZZ_TABLE).replace("DEEP", deep(depth)).encode()


DEEP_VALUES = {
    "query-values": (
        "Query",
        '{"TableName":"TABLE","KeyConditionExpression":"pk = :v",'
        '"ExpressionAttributeValues":{":v":DEEP}}',
    ),
    "scan-start-key": ("Scan", '{"TableName":"TABLE","ExclusiveStartKey":{"pk":DEEP}}'),
    "get-key": ("GetItem", '{"TableName":"TABLE","Key":{"pk":DEEP,"sk":{"N":"1"}}}'),
    "batch-get-key": ("BatchGetItem", '{"RequestItems":{"TABLE":{"Keys":[{"pk":DEEP}]}}}'),
    "update-values": (
        "UpdateItem",
        '{"TableName":"TABLE","Key":{"pk":{"S":"d"},"sk":{"N":"1"}},'
        '"UpdateExpression":"SET a = :v","ExpressionAttributeValues":{":v":DEEP}}',
    ),
    "put-item": (
        "PutItem",
        '{"TableName":"TABLE","Item":{"pk":{"S":"d"},"sk":{"N":"2"},"a":DEEP}}',
    ),
    "statement-parameters": (
        "ExecuteStatement",
        '{"Statement":"SELECT * FROM \\"TABLE\\" WHERE pk = ?","Parameters":[DEEP]}',
    ),
}
# Past 254 JSON levels orjson writes no JSON: the proxy must then forward as sent, or
# evict what it cannot store (DynamoDB refuses items over 32 levels; moto accepts them).
DEEP_CASES = [
    pytest.param(case, depth, id=f"{case}-{depth}")
    for case in DEEP_VALUES
    for depth in (40, 200, 900)
]


@pytest.mark.parametrize(("case", "depth"), DEEP_CASES)
def test_deeply_nested_attribute_values(fuzzed: Fuzzed, case: str, depth: int) -> None:
    operation, template = DEEP_VALUES[case]
    raw = request_bytes(f"{PREFIX}.{operation}", body_of(template, depth), [])
    check_answers(fuzzed, raw, answers(exchange(fuzzed.proxy.port, raw)))
    check_still_serving(fuzzed)


FOUND = {
    # An unhashable ReturnValues reached a set look-up in the item writer: a 500.
    "update-return-values-list": (
        "UpdateItem",
        '{"TableName":"TABLE","Key":{"pk":{"S":"a"},"sk":{"N":"1"}},"ReturnValues":[]}',
    ),
    "update-return-values-map": (
        "UpdateItem",
        '{"TableName":"TABLE","Key":{},"ReturnValues":{"a":1}}',
    ),
}


@pytest.mark.parametrize("case", FOUND.keys())
def test_what_the_fuzzing_found(fuzzed: Fuzzed, case: str) -> None:
    operation, template = FOUND[case]
    raw = request_bytes(f"{PREFIX}.{operation}", body_of(template, 0), [])
    check_answers(fuzzed, raw, answers(exchange(fuzzed.proxy.port, raw)))
    check_still_serving(fuzzed)


# PartiQL with every member at once --------------------------------------------------------
#
# ExecuteStatement runs "Statement", BatchExecuteStatement "Statements", ExecuteTransaction
# "TransactStatements"; the upstream ignores the other two. Requests carrying all three,
# each with reads and writes, must be read by the member the operation runs: without
# auth_file, the item cache must still agree with the upstream after each; with it, a key
# that may only read must never get a write through.

PARTIQL_TABLE = f"fuzz-partiql-{uuid.uuid4().hex[:8]}"
PARTIQL_AUTH_TABLE = f"fuzz-partiql-auth-{uuid.uuid4().hex[:8]}"
PARTIQL_KEYS = [{"pk": {"S": pk}, "sk": {"N": "1"}} for pk in ("p0", "p1", "p2")]
PARTIQL_SEED = [{**key, "v": {"S": "seed"}} for key in PARTIQL_KEYS[:2]]  # p2: absent
PARTIQL_OPERATIONS = ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction")
READER_KEY, READER_SECRET = "AKIAFUZZREADER00001", "fuzz-reader-secret-9f2Kq/daxproxy"


def partiql_entries(table: str) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """(reads, writes) of ``table``, as statement entries ({"Statement", "Parameters"})."""

    def entry(text: str, *parameters: dict[str, str]) -> dict[str, Any]:
        return (
            {"Statement": text, "Parameters": list(parameters)}
            if parameters
            else {"Statement": text}
        )

    pk = st.sampled_from(["p0", "p1", "p2"]).map(lambda v: {"S": v})
    one = {"N": "1"}
    reads = st.one_of(
        pk.map(lambda k: entry(f'SELECT * FROM "{table}" WHERE pk = ? AND sk = ?', k, one)),
        pk.map(lambda k: entry(f'SELECT v FROM "{table}" WHERE pk = ?', k)),
        pk.map(lambda k: entry(f'EXISTS(SELECT * FROM "{table}" WHERE pk = ? AND sk = ?)', k, one)),
        st.just(entry(f'SELECT * FROM "{table}"')),
    )
    value = st.sampled_from(["w1", "w2"]).map(lambda v: {"S": v})
    writes = st.one_of(
        st.tuples(value, pk).map(
            lambda t: entry(f'UPDATE "{table}" SET v = ? WHERE pk = ? AND sk = ?', t[0], t[1], one)
        ),
        st.tuples(value, pk).map(
            lambda t: entry(f"UPDATE {table} SET v = ? WHERE pk = ? AND sk = ?", t[0], t[1], one)
        ),
        st.sampled_from(["p0", "p2"]).map(
            lambda k: entry(f"INSERT INTO \"{table}\" VALUE {{'pk': '{k}', 'sk': 1, 'v': 'ins'}}")
        ),
        pk.map(lambda k: entry(f'DELETE FROM "{table}" WHERE pk = ? AND sk = ?', k, one)),
        st.tuples(value, pk).map(
            lambda t: entry(
                f'UPDATE "{table}" SET v = ? WHERE pk = ? AND sk = ? -- x', t[0], t[1], one
            )
        ),
    )
    return reads, writes


def partiql_requests(table: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(operation, body) with all three members, each holding reads and writes."""
    reads, writes = partiql_entries(table)
    entries = st.one_of(reads, writes, json_values)
    listed = st.tuples(reads, writes, st.lists(entries, max_size=2)).flatmap(
        lambda t: st.permutations([t[0], t[1], *t[2]])
    )

    def body(single: Any, batch: list[Any], transaction: list[Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"Statements": batch, "TransactStatements": transaction}
        if isinstance(single, dict) and "Statement" in single:
            payload.update(single)  # "Statement", with its "Parameters"
        else:
            payload["Statement"] = single
        return payload

    bodies = st.builds(body, st.one_of(reads, writes, reads, writes, json_values), listed, listed)
    return st.tuples(st.sampled_from(PARTIQL_OPERATIONS), bodies)


def straight_items(moto: Any, table: str) -> list[Any]:
    found = moto.scan(TableName=table, ConsistentRead=True)["Items"]
    return sorted(found, key=lambda item: item["pk"]["S"])


class PartiQLFuzzed:
    def __init__(self, fuzzed: Fuzzed, moto: Any, reader: Fuzzed) -> None:
        self.fuzzed = fuzzed  # the proxy without auth_file, and its moto
        self.moto = moto  # boto3's, straight to moto
        self.reader = reader  # a proxy with auth_file in front of the same moto, and its moto

    def __repr__(self) -> str:  # short in Hypothesis' report of a failing example
        return "PartiQLFuzzed(...)"


@pytest.fixture(scope="module")
def partiql_moto() -> Iterator[str]:
    """A moto server of the PartiQL tests' own: moto runs each statement over a copy of
    every item of every table it holds, so on the suite's shared server, after the tables
    the earlier tests left (a 200-level nested item among them), each example took ten
    times as long."""
    server = MotoServer()
    server.launch()
    try:
        server.wait_ready_sync()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def partiql_fuzzed(
    partiql_moto: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PartiQLFuzzed]:
    moto = boto3.client(
        "dynamodb", endpoint_url=partiql_moto, region_name=REGION, config=NO_RETRIES
    )
    for table in (PARTIQL_TABLE, PARTIQL_AUTH_TABLE):
        moto.create_table(TableName=table, **PK_SK_TABLE)
        for item in PARTIQL_SEED:
            moto.put_item(TableName=table, Item=item)
    auth_file = tmp_path_factory.mktemp("fuzz-auth") / "auth.toml"
    auth_file.write_text(
        f"""
[[keys]]
access_key_id = "{READER_KEY}"
secret_access_key = "{READER_SECRET}"
tables = ["fuzz-*"]
operations = ["read", "describe"]
"""
    )
    with (
        fuzzed_proxy(partiql_moto) as fuzzed,
        running_proxy("--upstream", partiql_moto, "--auth-file", str(auth_file)) as proxy,
    ):
        reader = Fuzzed(proxy, None, fuzzed.upstream_port)
        yield PartiQLFuzzed(fuzzed, moto, reader)
        assert "Traceback (most recent call last):" not in proxy.log()


PARTIQL_SETTINGS = settings(
    max_examples=EXAMPLES or 100,
    deadline=None,
    derandomize=not EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PARTIQL_SETTINGS
@given(request=partiql_requests(PARTIQL_TABLE))
def test_partiql_with_every_member_leaves_the_item_cache_true(
    partiql_fuzzed: PartiQLFuzzed, request: tuple[str, dict[str, Any]]
) -> None:
    state, moto = partiql_fuzzed.fuzzed, partiql_fuzzed.moto
    proxy = state.client
    # Through the proxy, so its cache follows: the seed, p2 absent; then every key cached.
    for item in PARTIQL_SEED:
        proxy.put_item(TableName=PARTIQL_TABLE, Item=item)
    proxy.delete_item(TableName=PARTIQL_TABLE, Key=PARTIQL_KEYS[2])
    for key in PARTIQL_KEYS:
        proxy.get_item(TableName=PARTIQL_TABLE, Key=key)
    operation, payload = request
    raw = request_bytes(f"{PREFIX}.{operation}", orjson.dumps(payload), [])
    check_answers(state, raw, answers(exchange(state.proxy.port, raw)))
    for key in PARTIQL_KEYS:
        cached = proxy.get_item(TableName=PARTIQL_TABLE, Key=key).get("Item")
        truth = moto.get_item(TableName=PARTIQL_TABLE, Key=key, ConsistentRead=True).get("Item")
        assert cached == truth, (key, operation, payload)
    check_still_serving(state)


def signed_request_bytes(operation: str, body: bytes) -> bytes:
    """The request as botocore signs it for the reader's key (for Host ``127.0.0.1``, as
    :func:`request_bytes` sends it)."""
    target = f"{PREFIX}.{operation}"
    signed = sigv4_headers(
        "http://127.0.0.1/", target, body, key=READER_KEY, secret=READER_SECRET, region=REGION
    )
    headers = [(k, v) for k, v in signed if k.lower() != "x-amz-target"]
    return request_bytes(target, body, headers)


@PARTIQL_SETTINGS
@given(request=partiql_requests(PARTIQL_AUTH_TABLE))
def test_partiql_with_every_member_never_lets_a_read_only_key_write(
    partiql_fuzzed: PartiQLFuzzed, request: tuple[str, dict[str, Any]]
) -> None:
    reader, moto = partiql_fuzzed.reader, partiql_fuzzed.moto
    operation, payload = request
    raw = signed_request_bytes(operation, orjson.dumps(payload))
    got = answers(exchange(reader.proxy.port, raw))
    check_answers(reader, raw, got)
    status, _, body = got[0]
    if status == 400 and is_dynamodb_error(body):
        assert orjson.loads(body)["__type"].rpartition("#")[2] in {
            "AccessDeniedException",  # the proxy's: a write, or a statement it cannot read
            "ValidationException",  # moto's, to reads it cannot run
            "ResourceNotFoundException",
            "SerializationException",
        }, body[:300]
        assert b"Signature" not in body, body[:300]  # the signature itself was good
    assert straight_items(moto, PARTIQL_AUTH_TABLE) == PARTIQL_SEED, (operation, payload)
    process = reader.proxy.process
    assert process is not None and process.poll() is None, reader.proxy.log()
