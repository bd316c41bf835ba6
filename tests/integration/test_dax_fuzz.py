"""Fuzzing DAX's protocol against a real proxy process in front of the suite's moto.

- **Broken streams**: random bytes after the preamble (or none), valid requests cut short
  and then the connection closed, unknown method ids, declared lengths past the limit.
  Unknown ids and lengths past the limit must break the framing; otherwise the sans-IO
  :class:`~daxproxy.dax.session.Session` is the oracle: what it refuses, the proxy closes
  the connection on by itself; what it waits on, the proxy waits on too, until the client
  closes. Whatever the proxy sent before closing is whole replies.
- **Well-framed calls, wrong contents**: each method id with its arity and arguments of
  random type and shape (:mod:`tests.dax_calls_strategies`). Every reply is a success or
  a DAX error that is not the proxy's own InternalServerError (a 5xx may be moto's own,
  relayed), no traceback is logged, and the connection stays open.
- **Memory**: connections that send half a large item and stall, or an endless one, hold
  no more than ``max_body_bytes`` each: the endless ones are cut off, the stalled ones
  closed when idle, and the process's peak resident set stays within what that bounds.

After each example the process serves on: a new DAX connection is answered and boto3 over
HTTP reads the check item; after the last, the real ``amazondax`` client reads it too (its
threads use ``random``, which Hypothesis forbids while it draws). Nothing is logged as a
fault. The default run is derandomized (about 10 s); ``FUZZ_EXAMPLES=2000`` makes a longer
random hunt.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from amazondax import AmazonDaxClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daxproxy.dax import cbor, methods
from daxproxy.dax.methods import METHODS
from daxproxy.dax.session import ProtocolError, Session
from tests.dax_calls_strategies import BY_NAME, HASH_TABLE, LIST_IDS, LIST_NAMES, SCHEMAS, dax_calls
from tests.integration.conftest import Endpoints
from tests.integration.harness import NO_RETRIES, REGION, TEST_ENV, ProxyProcess, running_proxy

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
MAX_BODY = 64 * 1024
PREAMBLE = b"".join(cbor.dumps(x) for x in ("J7yne5G", 0, b"s", {"UserAgent": "fuzz"}, 0))
ENDPOINTS = cbor.dumps(1) + cbor.dumps(methods.ENDPOINTS.id)
CHECK_KEY = {"pk": {"S": "check"}}
CHECK_ITEM = {**CHECK_KEY, "v": {"S": "still here"}}


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=not EXAMPLES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@dataclass
class Fuzzed:
    proxy: ProxyProcess
    http: Any  # boto3 through the proxy

    def serves_on(self) -> None:
        """A new DAX connection is answered (the key schema of the check item's table), and
        boto3 reads the check item. (The real DAX client reads it after the last example:
        its threads use ``random``, which Hypothesis forbids while it draws examples.)"""
        connection = DaxConnection(self.proxy.port)
        try:
            connection.socket.sendall(PREAMBLE)
            schema = cbor.dumps(1) + cbor.dumps(methods.DEFINE_KEY_SCHEMA.id)
            assert connection.reply(schema + cbor.dumps(HASH_TABLE.encode())) == [[], {"pk": "S"}]
        finally:
            connection.close()
        assert self.http.get_item(TableName=HASH_TABLE, Key=CHECK_KEY)["Item"] == CHECK_ITEM


def read_by_the_dax_client(proxy: ProxyProcess) -> None:
    with AmazonDaxClient(
        endpoint_url=f"dax://127.0.0.1:{proxy.port}",
        region_name=REGION,
        aws_access_key_id="AKIDFUZZ",
        aws_secret_access_key="secret",
    ) as dax:
        assert dax.get_item(TableName=HASH_TABLE, Key=CHECK_KEY)["Item"] == CHECK_ITEM


@pytest.fixture(scope="module")
def fuzzed(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data_dir = str(tmp_path_factory.mktemp("data"))
    with running_proxy(
        "--upstream",
        endpoints.upstream,
        "--max-body-bytes",
        str(MAX_BODY),
        "--data-dir",
        data_dir,
    ) as proxy:
        http = boto3.client(
            "dynamodb",
            endpoint_url=proxy.url,
            region_name=REGION,
            aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            config=NO_RETRIES,
        )
        for table, schema in SCHEMAS.items():
            keys = [(schema.hash_name, schema.hash_type, "HASH")]
            if schema.range_name is not None and schema.range_type is not None:
                keys.append((schema.range_name, schema.range_type, "RANGE"))
            http.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in keys],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
                BillingMode="PAY_PER_REQUEST",
            )
        http.put_item(TableName=HASH_TABLE, Item=CHECK_ITEM)
        lists = DaxConnection(proxy.port)
        try:
            lists.socket.sendall(PREAMBLE)
            for names in LIST_NAMES:  # the values payloads' lists, with the ids they expect
                method = cbor.dumps(1) + cbor.dumps(methods.DEFINE_ATTRIBUTE_LIST_ID.id)
                [_, list_id] = lists.reply(method + cbor.dumps(list(names)))
                assert LIST_IDS[list_id] == len(names)
        finally:
            lists.close()
        fuzzed = Fuzzed(proxy, http)
        fuzzed.serves_on()
        yield fuzzed
        fuzzed.serves_on()
        read_by_the_dax_client(proxy)
        log = proxy.log()
        for table in SCHEMAS:
            http.delete_table(TableName=table)
    faults = [line for line in log.splitlines() if " ERROR " in line or line.startswith("  File")]
    assert "Traceback (most recent call last):" not in log, "\n".join(faults)
    assert " ERROR " not in log, "\n".join(faults)


class DaxConnection:
    """A raw DAX connection: bytes out, whole CBOR items back."""

    def __init__(self, port: int, raw: socket.socket | None = None) -> None:
        self.socket = raw or socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = cbor.ItemReader(1 << 24)

    def close(self) -> None:
        self.socket.close()

    def item(self) -> Any:
        while True:
            try:
                return self.reader.next()
            except cbor.NeedMore:
                data = self.socket.recv(65536)
                assert data, "the proxy closed a connection it should have answered"
                self.reader.feed(data)

    def reply(self, request: bytes) -> list[Any]:
        """The items the proxy answered ``request`` with (none for authorizeConnection):
        an endpoints call follows it, and its reply marks the end."""
        self.socket.sendall(request + ENDPOINTS)
        items: list[Any] = []
        while not (len(items) >= 2 and items[-2] == [] and _is_endpoints(items[-1])):
            items.append(self.item())
        return items[:-2]

    def closed_by_the_proxy(self) -> bool:
        """True once the proxy closes the connection; False while it keeps it open for
        10 s. What it sent before is kept in ``reader``."""
        try:
            while data := self.socket.recv(65536):
                self.reader.feed(data)
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True


def _is_endpoints(item: Any) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 1
        and isinstance(item[0], dict)
        and item[0].get(1) == "daxproxy"
    )


# Broken streams -----------------------------------------------------------------------

method_ids = st.sampled_from(sorted(METHODS))
unknown_ids = st.integers(-(2**31), 2**31 - 1).filter(lambda m: m not in METHODS)
huge_heads = st.sampled_from([b"\x5b", b"\x7b", b"\x9b", b"\xbb"]).flatmap(
    lambda head: st.integers(MAX_BODY + 1, 2**64 - 1).map(lambda n: head + n.to_bytes(8, "big"))
)


def whole_request(method_id: int) -> bytes:
    """A request of the right arity (its table "T" does not exist: an error is its answer)."""
    return cbor.dumps(1) + cbor.dumps(method_id) + cbor.dumps(b"T") * METHODS[method_id].arity


# (True: the proxy must close the connection on its own; None: as Session says), bytes.
broken_streams = st.one_of(
    st.binary(max_size=300).map(lambda data: (None, PREAMBLE + data)),
    st.binary(max_size=100).map(lambda data: (None, b"g" + data)),  # DAX's first byte
    unknown_ids.map(lambda m: (True, PREAMBLE + cbor.dumps(1) + cbor.dumps(m))),
    st.tuples(method_ids, huge_heads).map(
        lambda t: (True, PREAMBLE + (cbor.dumps(1) + cbor.dumps(t[0]) + t[1]))
    ),
    # Whole requests, cut anywhere (the client then closes).
    st.tuples(st.lists(method_ids, min_size=1, max_size=3), st.integers(0, 300)).map(
        lambda t: (None, (PREAMBLE + b"".join(whole_request(m) for m in t[0]))[: t[1]])
    ),
)


@fuzz_settings(60)
@given(case=broken_streams)
def test_a_broken_stream_closes_its_connection_and_the_proxy_serves_on(
    fuzzed: Fuzzed, case: tuple[bool | None, bytes]
) -> None:
    must_close, stream = case
    try:
        Session(MAX_BODY).receive(stream)
        broken = False
    except ProtocolError:
        broken = True
    assert broken or not must_close
    connection = DaxConnection(fuzzed.proxy.port)
    try:
        connection.socket.sendall(stream)
        if not broken:  # the proxy waits for the rest: the client gives up
            connection.socket.shutdown(socket.SHUT_WR)
        assert connection.closed_by_the_proxy()
    finally:
        connection.close()
    # What it answered before closing (whole requests before the cut) is whole replies.
    with contextlib.suppress(cbor.NeedMore):
        while True:
            connection.reader.next()
    assert connection.reader.buffered == 0
    fuzzed.serves_on()


# Well-framed calls with wrong contents ------------------------------------------------


class Calls:
    """One DAX connection for the calls, opened again after one failed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open: DaxConnection | None = None

    def reply(self, request: bytes) -> list[Any]:
        if self.open is None:
            self.open = DaxConnection(self.port)
            self.open.socket.sendall(PREAMBLE)
        try:
            return self.open.reply(request)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.open is not None:
            self.open.close()
            self.open = None


@pytest.fixture(scope="module")
def connection(fuzzed: Fuzzed) -> Iterator[Calls]:
    calls = Calls(fuzzed.proxy.port)
    yield calls
    calls.close()


@fuzz_settings(250)
@given(call=dax_calls())
def test_a_call_with_wrong_contents_is_answered_with_a_dax_error_or_a_reply(
    fuzzed: Fuzzed, connection: Calls, call: tuple[str, list[bytes]]
) -> None:
    name, arguments = call
    method = BY_NAME[name]
    if method is methods.ENDPOINTS:  # its reply marks the end of each answer
        return
    request = cbor.dumps(1) + cbor.dumps(method.id) + b"".join(arguments)
    items = connection.reply(request)
    assert "Traceback (most recent call last):" not in fuzzed.proxy.log()
    if not method.replies:
        assert items == []
        return
    status = items[0]
    assert isinstance(status, list)
    if status:  # an error: codes, message, [request id, code, HTTP status]
        assert len(items) == 3
        codes, message, (_, code, http_status) = items
        assert all(isinstance(c, int) for c in codes) and isinstance(message, str)
        # A 500 may be moto's own, relayed (UpdateItem without an update expression): then
        # it is not the proxy's fault, which would say so and log a traceback.
        assert http_status < 500 or message != "Internal server error", (code, message)


# Memory --------------------------------------------------------------------------------


def _memory(proxy: ProxyProcess, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of the proxy process, in bytes."""
    assert proxy.process is not None
    with open(f"/proc/{proxy.process.pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_stalled_and_endless_items_hold_no_more_than_the_limit(endpoints: Endpoints) -> None:
    """Stalled halves of large items are held until the idle timeout closes them; an endless
    item (an indefinite-length string) is cut off once past the limit, however fast it
    comes: the process's peak stays within the limit per connection."""
    max_body, stalled_count, endless_count, endless_bytes = 1024 * 1024, 24, 8, 32 * 1024 * 1024
    with running_proxy(
        "--upstream",
        endpoints.upstream,
        "--max-body-bytes",
        str(max_body),
        "--client-idle-timeout-millis",
        "2000",
    ) as proxy:
        before = _memory(proxy, "VmRSS")
        head = PREAMBLE + cbor.dumps(1) + cbor.dumps(methods.DEFINE_KEY_SCHEMA.id)
        chunk = cbor.dumps(b"x" * 60_000)
        stalled: list[DaxConnection] = []
        endless: list[DaxConnection] = []
        try:
            for _ in range(stalled_count):  # half of an item just under the limit
                stalled.append(DaxConnection(proxy.port))
                stalled[-1].socket.sendall(head + b"\x5a" + (max_body - 16).to_bytes(4, "big"))
                stalled[-1].socket.sendall(b"x" * (max_body // 2))
            for _ in range(endless_count):
                endless.append(DaxConnection(proxy.port))
                sent = 0
                with contextlib.suppress(ConnectionError):
                    endless[-1].socket.sendall(head + b"\x5f")
                    while sent < endless_bytes:
                        endless[-1].socket.sendall(chunk)
                        sent += len(chunk)
                # Cut off: past the limit, and what the sockets' buffers took, sends fail.
                assert sent < endless_bytes
                assert endless[-1].closed_by_the_proxy()
            peak = _memory(proxy, "VmHWM") - before
            assert peak < stalled_count * max_body + 32 * 1024 * 1024, peak
            for connection in stalled:  # closed once idle
                assert connection.closed_by_the_proxy()
        finally:
            for connection in stalled + endless:
                connection.close()
        assert _requests_served(proxy)


def _requests_served(proxy: ProxyProcess) -> bool:
    connection = DaxConnection(proxy.port)
    try:
        connection.socket.sendall(PREAMBLE)
        return connection.reply(b"") == []
    finally:
        connection.close()
