"""bench.replay's pure parts: the requests it sends, the reply lengths it expects, the
checks that count a wrong reply as an error."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from bench import replay
from bench.replay import DAX, HTTP, Expected, Load, WarmError
from bench.workloads import CATALOGUE, item, key_of, stream
from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, methods
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Session
from tests.unit.dax.real_client import drive

WORKLOAD = CATALOGUE["read-zipf"].with_options(items=100)
SCHEMA = KeySchema("pk", "S", None, None)
HOST = "127.0.0.1:9"


def test_http_requests_are_the_bench_streams_own_in_its_order() -> None:
    keys = replay.key_order(WORKLOAD, 500)
    assert [replay.http_request(WORKLOAD, n, HOST) for n in keys] == [
        payload for _, payload in stream(WORKLOAD, HOST, 500)
    ]


def test_only_plain_getitem_workloads_replay() -> None:
    for name in ("mix-95-5", "forward-95-5", "batch-25", "query"):
        with pytest.raises(ValueError, match="not a plain GetItem"):
            replay.key_order(CATALOGUE[name])


def _real_client_get_item(n: int) -> bytes:
    """Every byte the amazon-dax-client sends for one GetItem of key ``n``."""
    lists = AttributeLists()
    stored = item(n, 100)
    reply = calls.get_item_reply({"Item": stored}, SCHEMA, lists)
    list_id = lists.id_of(("payload", "version"))
    replies = calls.key_schema_reply(SCHEMA) + reply + calls.attribute_list_reply(list_id, lists)
    key = {"pk": {"S": key_of(n)}}
    result, sent = drive(lambda c: c.get_item(TableName=WORKLOAD.table, Key=key), replies)
    assert result["Item"] == stored
    return sent


def test_dax_get_item_frame_is_what_the_real_client_sends() -> None:
    sent = _real_client_get_item(7)
    assert replay.dax_get_item(WORKLOAD, 7) in sent


def test_dax_opening_is_a_preamble_and_an_authorize_connection_of_the_clients_shape() -> None:
    ours = Session(1 << 20)
    [authorize, get] = ours.receive(
        replay.dax_opening(b"s" * 16) + replay.dax_get_item(WORKLOAD, 3)
    )
    assert ours.preamble is not None
    assert ours.preamble.session == b"s" * 16
    assert ours.preamble.user_agent == replay.USER_AGENT
    assert authorize.method == methods.AUTHORIZE_CONNECTION
    assert get.method == methods.GET_ITEM
    assert get.args == (WORKLOAD.table.encode(), key_of(3).encode(), {3: 0})
    theirs = Session(1 << 20)
    client_authorize = theirs.receive(_real_client_get_item(3))[0]
    assert client_authorize.method == methods.AUTHORIZE_CONNECTION
    assert [type(a) for a in authorize.args] == [type(a) for a in client_authorize.args]
    assert theirs.preamble is not None and theirs.preamble.user_agent == replay.USER_AGENT


def _http_answer(body: bytes, request_id: str = "A" * 52, status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"x-amzn-RequestId: " + request_id.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def test_http_reply_end_waits_for_the_whole_body() -> None:
    answer = _http_answer(b'{"Item":{}}')
    for cut in (0, 10, len(answer) - 1):
        assert replay.http_reply_end(answer[:cut]) == -1
    assert replay.http_reply_end(answer) == len(answer)
    assert replay.http_reply_end(answer + b"HTTP/1.1") == len(answer)


def test_dax_reply_end_reads_the_status_and_one_item() -> None:
    answer = calls.get_item_reply({"Item": item(1, 100)}, SCHEMA, AttributeLists())
    for cut in (0, 1, len(answer) - 1):
        assert replay.dax_reply_end(answer[:cut]) == -1
    assert replay.dax_reply_end(answer) == len(answer)
    assert replay.dax_reply_end(calls.success(None)) == 2  # a miss: null


def test_a_dax_error_reply_stops_the_warm_up() -> None:
    with pytest.raises(WarmError, match="DAX error"):
        replay.dax_reply_end(b"\x83\x01\x02\x03" + b"\x60" * 3)


def test_an_http_hit_matches_another_with_a_fresh_request_id_but_not_another_body() -> None:
    expected = replay.expected_of(HTTP, _http_answer(b'{"Item":{"a":{"S":"x"}}}', "A" * 52))
    assert expected.matches(_http_answer(b'{"Item":{"a":{"S":"x"}}}', "B" * 52))
    assert not expected.matches(_http_answer(b'{"Item":{"a":{"S":"y"}}}', "B" * 52))
    assert not expected.matches(_http_answer(b'{"Item":{"a":{"S":"x"}}}', "B" * 53))
    assert not expected.matches(_http_answer(b'{"Item":{"a":{"S":"x"}}}', status=b"201 OK"))
    with pytest.raises(WarmError, match="not 200"):
        replay.expected_of(HTTP, _http_answer(b"{}", status=b"400 Bad Request"))


def test_a_dax_hit_must_be_the_same_bytes() -> None:
    expected = replay.expected_of(DAX, b"\x80\xa1\x00\x41\x01")
    assert expected.matches(b"\x80\xa1\x00\x41\x01")
    assert not expected.matches(b"\x80\xa1\x00\x41\x02")


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server that answers each request (one recv) with the next queued reply."""
    replies: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            while conn.recv(65536) and replies:
                conn.sendall(replies.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], replies
    thread.join(5)


def test_warm_records_each_keys_second_reply(server: tuple[int, list[bytes]]) -> None:
    port, replies = server
    hit = _http_answer(b'{"Item":1}', "B" * 52)
    replies += [_http_answer(b'{"Item":1}', "C" * 52), hit]
    requests = {5: replay.http_request(WORKLOAD, 5, HOST)}
    assert replay.warm("127.0.0.1", port, HTTP, requests, 5.0) == {5: replay.expected_of(HTTP, hit)}


def test_warm_refuses_a_key_whose_replies_change_length(server: tuple[int, list[bytes]]) -> None:
    port, replies = server
    replies += [_http_answer(b'{"Item":1}', "C" * 36), _http_answer(b'{"Item":1}', "B" * 52)]
    requests = {5: replay.http_request(WORKLOAD, 5, HOST)}
    with pytest.raises(WarmError, match="replies of"):
        replay.warm("127.0.0.1", port, HTTP, requests, 5.0)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


REPLY = b"\x80\xa1\x00\x41\x01"


def _load(verify_every: int = 1) -> tuple[Load, replay.Connection, FakeTransport]:
    requests = {0: b"get0", 1: b"get1"}
    load = Load(
        ("127.0.0.1", 1),
        lambda: b"hello",
        [0, 1],
        requests,
        {0: Expected(len(REPLY), REPLY, b""), 1: Expected(len(REPLY), REPLY, b"")},
        connections=1,
        timeout=5.0,
        verify_every=verify_every,
    )
    load.window_start = 1  # the window is open
    connection = replay.Connection(load)
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return load, connection, transport


def test_a_reply_counts_once_its_bytes_are_in_and_the_next_request_goes() -> None:
    load, connection, transport = _load()
    assert transport.written == [b"hello", b"get0"]
    connection.data_received(REPLY[:2])
    assert load.latencies_us == []
    connection.data_received(REPLY[2:])
    assert len(load.latencies_us) == 1
    assert load.verified == 1
    assert transport.written[-1] == b"get1"
    assert sum(load.errors.values()) == 0


def test_a_reply_longer_than_the_keys_is_a_length_error() -> None:
    load, connection, transport = _load()
    connection.data_received(REPLY + b"\x00")
    assert load.errors["length"] == 1
    assert load.latencies_us == []
    assert transport.aborted


def test_a_verified_reply_of_other_bytes_is_a_content_error() -> None:
    load, connection, transport = _load()
    connection.data_received(b"\x80\xa1\x00\x41\x02")
    assert load.errors["content"] == 1
    assert load.latencies_us == []
    assert transport.aborted


def test_only_every_nth_reply_is_compared() -> None:
    load, connection, _ = _load(verify_every=2)
    connection.data_received(REPLY)  # request 0: verified
    connection.data_received(b"\x80\xa1\x00\x41\x02")  # request 1: length only
    assert load.verified == 1
    assert load.errors["content"] == 0
    assert len(load.latencies_us) == 2
