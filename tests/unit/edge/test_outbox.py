"""The outbox: a turn's first answer at once, the rest in order at the next turn, bounded;
and a connection's own writes and closes (HTTP's and DAX's) after what it has kept."""

from __future__ import annotations

import asyncio
from typing import Any

from daxproxy.edge.dax_protocol import DaxProtocol
from daxproxy.edge.outbox import Outbox
from daxproxy.service.proxy import Proxy
from daxproxy.service.upstream import UpstreamResponse
from tests.edge_wire import Wire, answers_in, make_edge, post
from tests.fakes import FakeUpstream, Sent
from tests.unit.edge.test_dax_protocol import ENDPOINTS, PREAMBLE, FakeTransport, InstantService

BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'


class Sink(asyncio.Transport):
    """Records what is written to it; ``broken`` raises on write."""

    def __init__(self, name: str, log: list[tuple[str, bytes]], broken: bool = False) -> None:
        super().__init__()
        self.name, self.log, self.broken = name, log, broken
        self.closing = self.aborted = False

    def write(self, data: Any) -> None:
        if self.broken:
            raise RuntimeError("broken")
        self.log.append((self.name, bytes(data)))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = self.closing = True


async def test_a_turns_first_answer_goes_at_once_and_the_rest_at_the_next_turn() -> None:
    log: list[tuple[str, bytes]] = []
    a, b = Sink("a", log), Sink("b", log)
    outbox = Outbox(asyncio.get_running_loop())
    outbox.write(a, b"1")
    outbox.write(b, b"2")
    outbox.write(a, b"3")
    assert log == [("a", b"1")]  # a lone request waits for nothing
    await asyncio.sleep(0)
    assert log == [("a", b"1"), ("b", b"2"), ("a", b"3")]  # in the order they came
    outbox.write(b, b"4")  # a new turn: at once again
    assert log[-1] == ("b", b"4")


async def test_kept_bytes_past_the_limit_are_written_at_once() -> None:
    log: list[tuple[str, bytes]] = []
    a = Sink("a", log)
    outbox = Outbox(asyncio.get_running_loop(), limit=10)
    outbox.write(a, b"first")
    outbox.write(a, b"six666")
    assert len(log) == 1
    outbox.write(a, b"more!")  # 11 bytes kept: over the limit
    assert [data for _, data in log] == [b"first", b"six666", b"more!"]


async def test_a_closing_transport_gets_nothing_and_a_broken_one_costs_the_others_nothing() -> None:
    log: list[tuple[str, bytes]] = []
    a, gone, broken, b = Sink("a", log), Sink("gone", log), Sink("x", log, True), Sink("b", log)
    outbox = Outbox(asyncio.get_running_loop())
    outbox.write(a, b"1")
    outbox.write(gone, b"2")
    outbox.write(broken, b"3")
    outbox.write(b, b"4")
    gone.closing = True  # its client went away before the turn ended
    outbox.flush()
    assert log == [("a", b"1"), ("b", b"4")]
    assert broken.aborted and not gone.aborted


def _numbered(sent: Sent) -> UpstreamResponse:
    return UpstreamResponse(200, [], sent.body)


def _wire() -> Wire:
    return Wire(make_edge(Proxy(FakeUpstream(answer=_numbered), max_body_bytes=4096)))


def _bodies(wire: Wire) -> list[bytes]:
    """The answers' bodies on the wire, without ending the turn."""
    return [a.body for a in answers_in(bytes(wire.transport.written))[0]]


async def test_an_answer_that_closes_goes_after_those_kept_before_it() -> None:
    wire = _wire()
    wire.send(
        post(b'{"n": 1}') + post(b'{"n": 2}') + post(b'{"n": 3}', extra=b"Connection: close\r\n")
    )
    assert _bodies(wire) == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert wire.transport.closing


async def test_a_large_answer_goes_after_those_kept_before_it() -> None:
    wire = _wire()
    large = b'{"n": "' + b"x" * 70_000 + b'"}'  # written apart from its head
    wire.send(post(b'{"n": 1}') + post(b'{"n": 2}') + post(large))
    assert _bodies(wire) == [b'{"n": 1}', b'{"n": 2}', large]


async def test_a_continue_goes_after_the_answers_kept_before_it() -> None:
    wire = _wire()
    wire.send(
        post(b'{"n": 1}')
        + post(b'{"n": 2}')
        + post(b'{"n": 3}', extra=b"Expect: 100-continue\r\n")[: -len(b'{"n": 3}')]
    )
    raw = bytes(wire.transport.written)
    assert raw.index(b'{"n": 2}') < raw.index(b"HTTP/1.1 100 Continue")


async def test_answers_kept_when_the_client_ends_its_input_are_sent_before_the_close() -> None:
    wire = _wire()
    wire.send(post(b'{"n": 1}') + post(b'{"n": 2}'))
    wire.protocol.eof_received()
    assert _bodies(wire) == [b'{"n": 1}', b'{"n": 2}'] and wire.transport.closing


async def test_a_dax_connection_sends_the_replies_it_kept_before_it_closes() -> None:
    service = InstantService()
    protocol = DaxProtocol(service, max_bytes=1024, outbox=Outbox(asyncio.get_running_loop()))  # type: ignore[arg-type]
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(PREAMBLE + ENDPOINTS + ENDPOINTS + ENDPOINTS)
    assert transport.written == b"endpoints"  # the rest at the turn's end
    protocol.close()
    assert transport.written == b"endpoints" * 3 and transport.closed
