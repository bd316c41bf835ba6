"""DAX's protocol on the HTTP port: the first byte decides, and a DAX connection is one of
the server's connections (the cap and gauge, the idle close, the drain on SIGTERM)."""

from __future__ import annotations

import asyncio
from typing import Any

from daxproxy.edge.dax_protocol import DaxProtocol
from daxproxy.edge.protocol import HttpProtocol
from daxproxy.edge.server import EdgeServer
from daxproxy.service.proxy import Proxy
from tests.edge_wire import FakeTransport, Wire, make_edge, post
from tests.fakes import FakeUpstream
from tests.unit.edge.test_dax_protocol import ENDPOINTS, PREAMBLE, HeldService


class SwitchingTransport(FakeTransport):
    """A fake transport whose protocol can be swapped, as asyncio's and uvloop's can."""

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8111) if name == "sockname" else default


class DaxWire(Wire):
    def __init__(self, edge: EdgeServer) -> None:
        self.edge = edge
        self.protocol: Any = edge.protocol()
        self.transport = SwitchingTransport(self.protocol)
        self.protocol.connection_made(self.transport)
        self._read = 0

    @property
    def now(self) -> Any:
        """The protocol the transport delivers to now."""
        return self.transport.protocol


def _edge(service: HeldService | None, **limits: Any) -> EdgeServer:
    edge = make_edge(Proxy(FakeUpstream(), max_body_bytes=1 << 20), **limits)
    edge.dax = service
    return edge


async def test_dax_bytes_are_handed_to_a_dax_connection_in_the_http_ones_place() -> None:
    service = HeldService()
    edge = _edge(service)
    dax, http = DaxWire(edge), DaxWire(edge)
    dax.send(PREAMBLE + ENDPOINTS)
    assert isinstance(dax.now, DaxProtocol)
    assert edge.connections == {dax.now, http.protocol}  # counted once, as DAX's
    service.release.set()
    await dax.settle()
    assert dax.transport.written == b"endpoints"  # the first bytes were answered
    http.send(post(b"{}", target="DynamoDB_20120810.ListTables"))
    await http.settle()
    assert [a.status for a in http.answers()] == [200]
    dax.transport.close()
    await dax.settle()
    assert edge.connections == {http.protocol}  # forgotten once lost


async def test_without_dax_served_the_bytes_are_read_as_http() -> None:
    wire = DaxWire(_edge(None))
    wire.send(PREAMBLE + ENDPOINTS)
    await wire.settle()
    assert isinstance(wire.now, HttpProtocol)
    assert [a.status for a in wire.answers()] == [400]


async def test_only_a_connections_first_bytes_are_told_apart() -> None:
    service = HeldService()
    wire = DaxWire(_edge(service))
    wire.send(post(b"{}", target="DynamoDB_20120810.ListTables"))
    await wire.settle()
    wire.send(PREAMBLE + ENDPOINTS)  # after an HTTP request: read as HTTP, refused
    await wire.settle()
    assert isinstance(wire.now, HttpProtocol)
    assert [a.status for a in wire.answers()] == [200, 400]
    assert service.seen == []


async def test_an_idle_dax_connection_closes_a_busy_one_does_not() -> None:
    service = HeldService()
    edge = _edge(service, idle_timeout=0.01)
    idle, busy = DaxWire(edge), DaxWire(edge)
    idle.send(PREAMBLE)
    busy.send(PREAMBLE + ENDPOINTS)
    await asyncio.sleep(0.03)  # past the idle timeout (loop timers run in deadline order)
    assert idle.transport.closing
    assert not busy.transport.closing  # its request is being answered
    service.release.set()
    await busy.settle()
    assert busy.transport.written == b"endpoints"
    await asyncio.sleep(0.03)  # idle from its reply on
    assert busy.transport.closing


async def test_drain_closes_idle_dax_connections_and_lets_a_reply_under_way_finish() -> None:
    service = HeldService()
    edge = _edge(service)
    idle, busy = DaxWire(edge), DaxWire(edge)
    idle.send(PREAMBLE + ENDPOINTS[:1])  # a request begun, none to answer
    busy.send(PREAMBLE + ENDPOINTS + ENDPOINTS)
    await busy.settle()
    drain = asyncio.get_running_loop().create_task(edge.drain(10.0))
    await busy.settle()
    assert idle.transport.closing and not busy.transport.closing
    service.release.set()
    assert await drain == 0
    assert busy.transport.written == b"endpoints"  # the one under way; not the next
    assert busy.transport.closing and not busy.transport.aborted
    assert edge.connections == set()


async def test_drain_cuts_a_dax_reply_past_the_deadline() -> None:
    service = HeldService()
    edge = _edge(service)
    stuck = DaxWire(edge)
    stuck.send(PREAMBLE + ENDPOINTS)
    await stuck.settle()
    await edge.drain(0.01)
    assert stuck.transport.aborted
    service.release.set()
    await stuck.settle()
    assert stuck.transport.written == b""
