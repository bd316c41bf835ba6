"""Driving the edge's protocol without sockets: a fake transport, bytes in, answers out.

:class:`Wire` is one client connection to an :class:`~daxproxy.edge.protocol.HttpProtocol`
of a real :class:`~daxproxy.edge.server.EdgeServer` (with the proxy a test gives it): a test
feeds bytes (:meth:`Wire.send`) and reads the answers written so far
(:meth:`Wire.answers`, once the loop's turn is over: the edge's outbox written), each
parsed by its ``Content-Length``, an interim ``100 Continue`` included. :func:`answers_in`
parses raw answer bytes the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from daxproxy.core.config import Settings
from daxproxy.edge.limits import Limits
from daxproxy.edge.protocol import HttpProtocol
from daxproxy.edge.server import EdgeServer
from daxproxy.service.proxy import Proxy


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def error(self) -> str:
        """The DynamoDB error code of the body."""
        return str(orjson.loads(self.body)["__type"]).rpartition("#")[2]


def answers_in(raw: bytes) -> tuple[list[Answer], bytes]:
    """The whole answers in ``raw``, in order, and the bytes after the last whole one."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        out.append(Answer(status, headers, rest[:length]))
        raw = rest[length:]
    return out, raw


class FakeTransport(asyncio.Transport):
    def __init__(self, protocol: HttpProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closing = self.aborted = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "written after close"
        self.written += data

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Wire:
    """One connection to ``edge``."""

    def __init__(self, edge: EdgeServer) -> None:
        self.edge = edge
        self.protocol = edge.protocol()
        self.transport = FakeTransport(self.protocol)
        self.protocol.connection_made(self.transport)
        self._read = 0

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def answers(self) -> list[Answer]:
        """Every whole answer written so far, the outbox's included (as when the loop's turn
        ends)."""
        self.edge.outbox.flush()
        return answers_in(bytes(self.transport.written))[0]

    async def settle(self, turns: int = 20) -> None:
        """Give the loop a few turns (a waiting handler's task, a close)."""
        for _ in range(turns):
            await asyncio.sleep(0)

    def lose(self) -> None:
        """The client goes away."""
        self.transport.closing = True
        self.protocol.connection_lost(None)


def make_edge(proxy: Proxy, settings: Settings | None = None, **limits: Any) -> EdgeServer:
    """An edge for ``proxy``, on the running loop; ``limits`` override its :class:`Limits`."""
    settings = settings or Settings()
    edge = EdgeServer(proxy, settings, asyncio.get_running_loop())
    if limits:
        base = edge.limits
        edge.limits = Limits(
            max_connections=limits.get("max_connections", base.max_connections),
            max_header_bytes=limits.get("max_header_bytes", base.max_header_bytes),
            max_body_bytes=limits.get("max_body_bytes", base.max_body_bytes),
            read_timeout=limits.get("read_timeout", base.read_timeout),
            idle_timeout=limits.get("idle_timeout", base.idle_timeout),
        )
    return edge


def post(
    body: bytes = b"{}",
    target: str = "DynamoDB_20120810.GetItem",
    path: str = "/",
    extra: bytes = b"",
) -> bytes:
    """A DynamoDB request's bytes."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nX-Amz-Target: {target}\r\n"
        f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )
