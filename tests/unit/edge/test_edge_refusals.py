"""Requests the edge answers itself, before the proxy, count in the metrics as the others."""

from __future__ import annotations

import asyncio

from daxproxy.service.metrics import Metrics
from daxproxy.service.proxy import Proxy
from tests.edge_wire import Wire, make_edge, post
from tests.fakes import FakeUpstream


async def test_405_413_408_and_unreadable_bodies_are_counted_as_client_errors() -> None:
    metrics = Metrics()
    edge = make_edge(
        Proxy(FakeUpstream(), max_body_bytes=4096, metrics=metrics),
        max_body_bytes=4096,
        read_timeout=0.02,
    )
    Wire(edge).send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    Wire(edge).send(b"GET /not-a-route HTTP/1.1\r\nHost: p\r\n\r\n")  # a 404: not counted
    Wire(edge).send(post(b"x" * 5000))
    chunked = Wire(edge)  # no Content-Length: found while reading
    chunked.send(post(b"")[: -len(b"Content-Length: 0\r\n\r\n")])
    chunked.send(b"Transfer-Encoding: chunked\r\n\r\n")
    for _ in range(5):
        chunked.send(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
    broken = Wire(edge)
    broken.send(post(b"")[: -len(b"Content-Length: 0\r\n\r\n")])
    broken.send(b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZ\r\n\r\n")
    slow = Wire(edge)
    slow.send(post(b"{}")[:-1])
    await asyncio.sleep(0.1)
    assert [a.status for a in slow.answers()] == [408]
    assert metrics.errors == {("http", "Unknown", "client"): 1, ("http", "GetItem", "client"): 4}
    assert sum(h.count for h in metrics.durations.values()) == 5
