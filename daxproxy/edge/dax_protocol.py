"""The DAX connection: bytes from a DAX client in, DAX replies out, one request at a time.

One :class:`DaxProtocol` per connection. Its :class:`~daxproxy.dax.session.Session`
frames the bytes into requests; they are answered in order by one task per connection
(the clients are strict request/response per socket, but the Python client writes
authorizeConnection and the next request in one go), each reply written when ready. A
connection whose bytes break DAX's framing is closed with the reason logged (never a
value from the bytes); the process serves on. Reading pauses while more than
``MAX_PENDING`` requests wait, so a client cannot queue work without bound.

:func:`serve_dax` listens on its own port. Telling DAX's preamble from HTTP on the HTTP
port (the first bytes are ``gJ7yne5G``) is the next step; so are TLS and the metrics.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Any

from daxproxy.dax.session import ProtocolError, Request, Session
from daxproxy.service.dax_calls import DaxService

log = logging.getLogger(__name__)

MAX_PENDING = 16


class DaxProtocol(asyncio.Protocol):
    def __init__(
        self, service: DaxService, max_bytes: int, connections: set[DaxProtocol] | None = None
    ) -> None:
        self._service = service
        self._connections = connections if connections is not None else set()
        self._session = Session(max_bytes)
        self._pending: collections.deque[Request] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._endpoint = (b"\x7f\x00\x00\x01", 0)
        self._worker: asyncio.Task[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.add(self)
        sockname = transport.get_extra_info("sockname")
        family = socket.AF_INET6 if ":" in sockname[0] else socket.AF_INET
        self._endpoint = (socket.inet_pton(family, sockname[0]), sockname[1])

    def data_received(self, data: bytes) -> None:
        try:
            requests = self._session.receive(data)
        except ProtocolError as error:
            log.warning("closing a DAX connection: %s", error)
            self._close()
            return
        self._pending.extend(requests)
        if self._pending and self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        if len(self._pending) > MAX_PENDING and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        self._pending.clear()
        if self._worker is not None:
            self._worker.cancel()

    async def _work(self) -> None:
        try:
            while self._pending:
                request = self._pending.popleft()
                reply = await self._service.answer(request, self._endpoint)
                if self._transport is None:
                    return
                if reply is not None:
                    self._transport.write(reply)
                if self._paused and len(self._pending) <= MAX_PENDING // 2:
                    self._paused = False
                    self._transport.resume_reading()
        finally:
            self._worker = None

    def close(self) -> None:
        """Close the connection (what was written is still sent)."""
        self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class DaxServer:
    """A listener for DAX's protocol alone, and its connections."""

    def __init__(self, service: DaxService, max_bytes: int) -> None:
        self._service = service
        self._max_bytes = max_bytes
        self.connections: set[DaxProtocol] = set()
        self.server: asyncio.Server | None = None

    def protocol(self) -> DaxProtocol:
        return DaxProtocol(self._service, self._max_bytes, self.connections)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.close()
        if self.server is not None:
            await self.server.wait_closed()
        await asyncio.sleep(0)  # the transports' connection_lost callbacks


async def serve_dax(
    service: DaxService, host: str, port: int, *, max_bytes: int, **kwargs: Any
) -> DaxServer:
    """Listen for DAX's protocol alone on ``host:port`` (``kwargs``: to ``create_server``)."""
    dax = DaxServer(service, max_bytes)
    dax.server = await asyncio.get_running_loop().create_server(dax.protocol, host, port, **kwargs)
    return dax
