"""The edge with a fake upstream, sans I/O: routes, framing, limits, order, errors.

Each test drives one :class:`~daxproxy.edge.protocol.HttpProtocol` through a fake
transport (tests/edge_wire.py): bytes in, answers out. The proxy has its caches off, so
each DynamoDB request reaches the fake upstream, whose ``send`` finishes without waiting
(answered inline, in ``data_received`` itself) unless a test holds it.
"""

from __future__ import annotations

import asyncio
import gzip

import pytest

from daxproxy.core.config import Settings
from daxproxy.core.wire import Target
from daxproxy.service.proxy import Proxy
from daxproxy.service.upstream import UpstreamResponse
from tests.edge_wire import Wire, make_edge, post
from tests.fakes import FakeUpstream, Sent

BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'
OK = UpstreamResponse(200, [("x-amz-crc32", "2745614147")], b"{}")


class HeldUpstream(FakeUpstream):
    """Holds the requests whose body holds ``b"hold"`` until the test sets ``release``."""

    def __init__(self) -> None:
        super().__init__(answer=self.numbered)
        self.release = asyncio.Event()

    def numbered(self, sent: Sent) -> UpstreamResponse:
        return UpstreamResponse(200, [], sent.body)

    async def send(
        self, target: Target, body: bytes, headers: object, *, retry_safe: bool
    ) -> UpstreamResponse:
        if b"hold" in body:
            await self.release.wait()
        return await super().send(target, body, headers, retry_safe=retry_safe)  # type: ignore[arg-type]


def proxy_of(upstream: FakeUpstream, max_body_bytes: int = 4096) -> Proxy:
    return Proxy(upstream, max_body_bytes=max_body_bytes)


async def test_a_request_that_needs_no_wait_is_answered_inline() -> None:
    upstream = FakeUpstream()
    wire = Wire(make_edge(proxy_of(upstream)))
    wire.send(post(BODY))
    # No loop turn yet: the answer was written by data_received itself, with no task.
    [answer] = wire.answers()
    assert answer.status == 200 and answer.body == b"{}"
    assert "connection" not in answer.headers and answer.headers["server"] == "Server"
    assert answer.headers["content-length"] == "2"
    assert upstream.sent[0].body == BODY


async def test_a_gzip_body_is_forwarded_as_sent_with_the_headers() -> None:
    upstream = FakeUpstream()
    wire = Wire(make_edge(proxy_of(upstream)))
    compressed = gzip.compress(BODY)
    wire.send(post(compressed, extra=b"Content-Encoding: gzip\r\nX-Other: yes\r\n"))
    assert [a.status for a in wire.answers()] == [200]
    assert upstream.sent[0].body == compressed
    assert ("X-Other", "yes") in list(upstream.sent[0].headers)


async def test_any_path_is_dynamodb() -> None:
    upstream = FakeUpstream()
    wire = Wire(make_edge(proxy_of(upstream)))
    wire.send(post(BODY, path="/some/prefix?x=1"))
    assert [a.status for a in wire.answers()] == [200]
    assert len(upstream.sent) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_the_root_get_a_405_and_the_connection_serves_on(
    method: str,
) -> None:
    wire = Wire(make_edge(proxy_of(FakeUpstream())))
    wire.send(f"{method} / HTTP/1.1\r\nHost: proxy\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    wire.send(post(BODY))
    refused, served = wire.answers()
    assert (refused.status, refused.error) == (405, "MethodNotAllowedException")
    assert refused.headers["allow"] == "POST" and refused.headers["x-amz-crc32"]
    assert served.status == 200


async def test_get_on_another_path_is_a_404_as_dynamodb_answers_it() -> None:
    wire = Wire(make_edge(proxy_of(FakeUpstream())))
    wire.send(b"GET /favicon.ico HTTP/1.1\r\nHost: proxy\r\n\r\n")
    [answer] = wire.answers()
    assert (answer.status, answer.error) == (404, "UnknownOperationException")


async def test_a_body_over_the_limit_gets_a_413_and_the_connection_closes() -> None:
    upstream = FakeUpstream()
    edge = make_edge(proxy_of(upstream), max_body_bytes=4096)
    wire = Wire(edge)
    request = post(b"x" * 5000)
    wire.send(request[:200])  # refused on its Content-Length: the body is read and dropped,
    assert wire.answers() == []  # for a client that sends it all before it reads an answer
    wire.send(request[200:])
    [answer] = wire.answers()
    assert (answer.status, answer.error) == (413, "RequestEntityTooLargeException")
    assert answer.headers["connection"] == "close" and wire.transport.closing

    chunked = Wire(edge)  # no Content-Length: found while reading
    chunked.send(
        b"POST / HTTP/1.1\r\nHost: p\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(5):
        chunked.send(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
    [answer] = chunked.answers()
    assert (answer.status, answer.error) == (413, "RequestEntityTooLargeException")
    assert chunked.transport.closing and upstream.sent == []

    waiting = Wire(edge)  # with Expect, its client waits: refused at once
    waiting.send(post(b"x" * 5000, extra=b"Expect: 100-continue\r\n")[:-5000])
    [answer] = waiting.answers()
    assert answer.status == 413 and waiting.transport.closing


async def test_a_chunked_body_is_read_whole() -> None:
    upstream = FakeUpstream()
    wire = Wire(make_edge(proxy_of(upstream)))
    wire.send(
        b"POST / HTTP/1.1\r\nHost: p\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for piece in (BODY[:10], BODY[10:]):
        wire.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    wire.send(b"0\r\n\r\n")
    assert [a.status for a in wire.answers()] == [200]
    assert upstream.sent[0].body == BODY


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    wire = Wire(make_edge(proxy_of(FakeUpstream())))
    request = post(BODY, extra=b"Expect: 100-continue\r\n")
    head = request[: -len(BODY)]
    wire.send(head)
    assert bytes(wire.transport.written) == b"HTTP/1.1 100 Continue\r\n\r\n"
    wire.send(BODY)
    continued, answer = wire.answers()
    assert (continued.status, answer.status) == (100, 200)


async def test_another_expect_is_a_417_and_closes() -> None:
    wire = Wire(make_edge(proxy_of(FakeUpstream())))
    wire.send(post(BODY, extra=b"Expect: junk\r\n"))
    [answer] = wire.answers()
    assert answer.status == 417 and answer.headers["connection"] == "close"


async def test_a_fault_in_the_proxy_is_a_500_without_a_traceback() -> None:
    def explode(sent: Sent) -> UpstreamResponse:
        raise RuntimeError("secret detail")

    wire = Wire(make_edge(proxy_of(FakeUpstream(answer=explode))))
    wire.send(post(BODY))
    [answer] = wire.answers()
    assert (answer.status, answer.error) == (500, "InternalServerError")
    assert b"secret detail" not in answer.body and b"Traceback" not in answer.body
    assert answer.headers["x-amz-crc32"]


@pytest.mark.parametrize(("ready", "status"), [(True, 200), (False, 503)])
async def test_health_and_readiness(ready: bool, status: int) -> None:
    wire = Wire(make_edge(proxy_of(FakeUpstream(ready=ready))))
    wire.send(b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\nGET /readyz?probe=1 HTTP/1.1\r\n\r\n")
    assert [a.status for a in wire.answers()] == [200, status]
    wire.send(b"HEAD /healthz HTTP/1.1\r\nHost: p\r\n\r\n")
    wire.edge.outbox.flush()  # the loop's turn ends
    raw = bytes(wire.transport.written)
    assert raw.endswith(b"\r\n\r\n") and raw.count(b'{"status":"ok"}') == 1


async def test_pipelined_requests_are_answered_in_order_behind_one_that_waits() -> None:
    upstream = HeldUpstream()
    wire = Wire(make_edge(proxy_of(upstream)))
    wire.send(
        post(b'{"n": 1}')
        + post(b'{"n": 2, "hold": 1}')
        + post(b'{"n": 3}')
        + b"GET / HTTP/1.1\r\n\r\n"
        + post(b'{"n": 4}')
    )
    assert [a.body for a in wire.answers()] == [b'{"n": 1}']  # the rest waits, in order
    assert not wire.transport.reading  # and no more is read meanwhile
    upstream.release.set()
    await wire.settle()
    got = wire.answers()
    assert [a.status for a in got] == [200, 200, 200, 405, 200]
    assert [a.body for a in got if a.status == 200] == [
        b'{"n": 1}',
        b'{"n": 2, "hold": 1}',
        b'{"n": 3}',
        b'{"n": 4}',
    ]
    assert wire.transport.reading


async def test_a_request_split_at_every_byte_gets_the_same_answer() -> None:
    upstream = FakeUpstream(answer=lambda sent: UpstreamResponse(200, [], sent.body))
    edge = make_edge(proxy_of(upstream))
    request = post(BODY, extra=b"X-Padding: " + b"p" * 40 + b"\r\n")
    for cut in range(1, len(request)):
        wire = Wire(edge)
        wire.send(request[:cut])
        wire.send(request[cut:])
        assert [(a.status, a.body) for a in wire.answers()] == [(200, BODY)], cut


async def test_a_bad_request_in_a_pipeline_is_answered_after_the_good_ones_then_closed() -> None:
    wire = Wire(make_edge(proxy_of(FakeUpstream())))
    wire.send(post(BODY) + b"NOT HTTP\r\n\r\n" + post(BODY))
    good, bad = wire.answers()
    assert good.status == 200
    assert (bad.status, bad.error) == (400, "SerializationException")
    assert bad.headers["connection"] == "close" and wire.transport.closing


async def test_a_long_header_field_or_too_many_fields_is_a_400() -> None:
    edge = make_edge(proxy_of(FakeUpstream()), max_header_bytes=1024)
    wire = Wire(edge)
    wire.send(post(BODY, extra=b"X-Long: " + b"a" * 1100 + b"\r\n"))
    [answer] = wire.answers()
    assert (answer.status, answer.error) == (400, "SerializationException")
    assert b"1024 bytes" in answer.body
    many = Wire(edge)
    many.send(post(BODY, extra=b"".join(b"X-%d: 1\r\n" % i for i in range(130))))
    assert [a.status for a in many.answers()] == [400]
    endless = Wire(edge)  # a field that never ends is bounded too
    endless.send(b"POST / HTTP/1.1\r\nX-Endless: ")
    for _ in range(1300):  # its fields' worth (1028 x 130 bytes) and one read's 1 MiB
        endless.send(b"a" * 1000)
    assert [a.status for a in endless.answers()] == [400]


async def test_a_client_stalling_mid_request_gets_a_408_and_is_closed() -> None:
    edge = make_edge(proxy_of(FakeUpstream()), read_timeout=0.05)
    head = Wire(edge)
    head.send(b"POST / HTTP/1.1\r\nHost: p\r\nX-Amz-")
    body = Wire(edge)
    body.send(post(BODY)[:-5])
    await asyncio.sleep(0.2)
    for wire in (head, body):
        [answer] = wire.answers()
        assert (answer.status, answer.error) == (408, "RequestTimeoutException")
        assert wire.transport.closing


async def test_a_request_half_read_while_reading_is_paused_has_no_read_clock_running() -> None:
    upstream = HeldUpstream()
    edge = make_edge(proxy_of(upstream), read_timeout=0.05)
    wire = Wire(edge)
    third = post(b'{"n": 3}')
    # One waits upstream, one waits behind it (reading pauses), a third came half-way.
    wire.send(post(b'{"hold": 1}') + post(b'{"n": 2}') + third[:-4])
    assert not wire.transport.reading
    await asyncio.sleep(0.2)  # past read_timeout: the proxy was not reading, the client waits
    assert wire.answers() == [] and not wire.transport.closing
    upstream.release.set()
    await wire.settle()
    wire.send(third[-4:])
    assert [a.status for a in wire.answers()] == [200, 200, 200]


async def test_an_idle_connection_is_closed_and_a_busy_one_is_not() -> None:
    upstream = HeldUpstream()
    edge = make_edge(proxy_of(upstream), idle_timeout=0.05, read_timeout=0.05)
    idle = Wire(edge)
    busy = Wire(edge)
    busy.send(post(b'{"hold": 1}'))
    await asyncio.sleep(0.2)
    assert idle.transport.closing and idle.answers() == []
    assert not busy.transport.closing
    upstream.release.set()
    await busy.settle()
    assert [a.status for a in busy.answers()] == [200]
    await asyncio.sleep(0.2)
    assert busy.transport.closing


async def test_a_client_that_goes_away_mid_body_or_mid_answer_breaks_nothing() -> None:
    upstream = HeldUpstream()
    edge = make_edge(proxy_of(upstream))
    mid_body = Wire(edge)
    mid_body.send(post(BODY)[:-3])
    mid_body.lose()
    waiting = Wire(edge)
    waiting.send(post(b'{"hold": 1}') + post(BODY))
    waiting.lose()
    upstream.release.set()
    await waiting.settle()
    assert edge.connections == set()
    assert [s.body for s in upstream.sent] == [b'{"hold": 1}']  # handled, answered to no one


async def test_past_the_connection_cap_a_connection_is_aborted_and_counted() -> None:
    from daxproxy.service.metrics import Metrics

    metrics = Metrics()
    edge = make_edge(Proxy(FakeUpstream(), max_body_bytes=4096, metrics=metrics), max_connections=2)
    held = [Wire(edge), Wire(edge)]
    refused = Wire(edge)
    assert refused.transport.aborted and metrics.client_connections_refused == 1
    assert all(not w.transport.closing for w in held) and len(edge.connections) == 2


async def test_shutdown_closes_idle_connections_and_lets_a_busy_one_answer() -> None:
    upstream = HeldUpstream()
    edge = make_edge(proxy_of(upstream))
    idle = Wire(edge)
    busy = Wire(edge)
    busy.send(post(b'{"hold": 1}'))
    drained = asyncio.ensure_future(edge.drain(5.0))
    await busy.settle()
    assert idle.transport.closing and not busy.transport.closing
    upstream.release.set()
    assert await drained == 0
    [answer] = busy.answers()
    assert answer.status == 200 and answer.headers["connection"] == "close"


async def test_shutdown_cuts_what_is_still_running_at_the_deadline() -> None:
    upstream = HeldUpstream()
    proxy = proxy_of(upstream)
    edge = make_edge(proxy)
    busy = Wire(edge)
    busy.send(post(b'{"hold": 1}'))
    await busy.settle()
    assert await edge.drain(0.05) == 1
    assert busy.transport.aborted and busy.answers() == []
    await busy.settle()
    assert proxy.in_flight == 0


async def test_a_timeout_armed_before_the_first_wait_still_cuts_the_task() -> None:
    """asyncio.timeout in a handler's inline first step holds the carrier; firing after
    the handler moved to its task, it cancels that task, as it would have cancelled it."""
    outcome: list[str] = []

    class TimedUpstream(FakeUpstream):
        async def send(
            self, target: Target, body: bytes, headers: object, *, retry_safe: bool
        ) -> UpstreamResponse:
            try:
                async with asyncio.timeout(0.02):
                    await asyncio.sleep(5)
            except TimeoutError:
                outcome.append("timed out")
            return OK

    wire = Wire(make_edge(proxy_of(TimedUpstream())))
    await asyncio.get_running_loop().run_in_executor(None, lambda: None)  # leave the test task
    loop = asyncio.get_running_loop()
    loop.call_soon(wire.send, post(BODY))  # from a loop callback, as a transport calls it
    await asyncio.sleep(0.2)
    assert outcome == ["timed out"]
    assert [a.status for a in wire.answers()] == [200]


def test_the_settings_limits_reach_the_edge() -> None:
    from daxproxy.edge.limits import limits_of

    limits = limits_of(Settings(client_read_timeout_millis=1500, max_body_bytes=2048))
    assert (limits.read_timeout, limits.max_body_bytes) == (1.5, 2048)
