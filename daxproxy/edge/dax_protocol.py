"""The DAX connection: bytes from a DAX client in, DAX replies out, one request at a time.

One :class:`DaxProtocol` per connection, made by the HTTP port's server when a connection's
first byte is DAX's (:data:`FIRST_BYTE`: the preamble's first, which no HTTP request line
begins with; :mod:`daxproxy.edge.server`), which hands it the transport and those first
bytes. Its :class:`~daxproxy.dax.session.Session` frames the bytes into requests; they are
answered in order (the clients are strict request/response per socket, but the Python
client writes authorizeConnection and the next request in one go), each reply written when
ready (through the server's outbox, :mod:`daxproxy.edge.outbox`, when given one): inline,
from the callback that read the request, while the service's answer needs no wait (a cache
hit of a known table: :func:`~daxproxy.edge.inline.first_step`, no task made); from the
first request that waits on, by one task per connection. A connection whose bytes break
DAX's framing (the rest of the preamble included), or whose answer faults outside the
service's own error replies, is closed with the reason logged (never a value from the
bytes); the process serves on. Reading pauses while more than ``MAX_PENDING`` requests
wait, so a client cannot queue work without bound.

The endpoints call names the address and port the clients then connect to (:func:`endpoint`):
the ``dax_endpoint`` setting's when it is of the client's address family (the clients drop
an endpoint of the other family), else the accepting socket's own.

The server's rules for a connection apply as to HTTP ones: with no request being answered
the connection closes after ``idle_timeout`` seconds (0: never), counted from the last
reply (or from the hand-over) however many bytes of a next request came since;
:meth:`DaxProtocol.shutdown` closes it at once when idle, else after the reply under way;
:meth:`DaxProtocol.cut` cancels that and aborts; ``forget`` is called once the connection
is lost.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

from daxproxy.core.config import dax_endpoint
from daxproxy.dax.session import MAGIC, ProtocolError, Request, Session
from daxproxy.edge.deadline import Deadline
from daxproxy.edge.inline import Carrier, first_step, resume
from daxproxy.edge.outbox import Outbox

log = logging.getLogger(__name__)

MAX_PENDING = 16
FIRST_BYTE = MAGIC[:1]


class Service(Protocol):
    """What answers a connection's requests (:class:`daxproxy.service.dax_calls.DaxService`)."""

    def answer(
        self, request: Request, endpoint: tuple[bytes, int]
    ) -> Coroutine[Any, Any, bytes | None]: ...


class Services(Protocol):
    """What gives each new connection what answers it (:meth:`daxproxy.service.dax_calls.
    DaxService.connection`: the service, or with ``auth_file`` the connection's
    authorization in front of it)."""

    def connection(self) -> Service: ...


def advertised(setting: str | None) -> tuple[bytes, int] | None:
    """The ``dax_endpoint`` setting as the endpoints reply writes it: the address's 4 or 16
    bytes and the port; None when it is not set."""
    if setting is None:
        return None
    address, port = dax_endpoint(setting)
    return address.packed, port


def endpoint(sockname: tuple[str, int], advertised: tuple[bytes, int] | None) -> tuple[bytes, int]:
    """What the endpoints call names on a connection accepted at ``sockname``: ``advertised``
    when its address is of the client's family, else the accepting socket's address and port.

    The clients keep only endpoints of their own socket's family (amazondax's
    ``DaxClient.endpoints``). An IPv4 client of a dual-stack listener is accepted at an
    IPv4-mapped IPv6 address: its socket is IPv4, so it gets the 4 bytes.
    """
    address = ipaddress.ip_address(sockname[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if advertised is not None and len(advertised[0]) == len(address.packed):
        return advertised
    return address.packed, sockname[1]


class DaxProtocol(asyncio.Protocol):
    def __init__(
        self,
        service: Service,
        max_bytes: int,
        *,
        idle_timeout: float = 0.0,
        forget: Callable[[DaxProtocol], None] | None = None,
        advertised: tuple[bytes, int] | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        """``advertised``: the ``dax_endpoint`` setting, packed (:func:`advertised`);
        ``outbox``: the server's (:mod:`daxproxy.edge.outbox`), else each reply is written
        at once."""
        self._service = service
        self._session = Session(max_bytes)
        self._pending: collections.deque[Request] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._endpoint = (b"\x7f\x00\x00\x01", 0)
        self._worker: asyncio.Task[None] | None = None
        self._paused = False
        self._stopping = self._closed = False
        self._idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        # When the connection counts as idle, counted from the last reply (or the hand-over).
        self._idle = Deadline(self._loop, self._on_idle)
        self._forget = forget
        self._carrier: Carrier | None = None
        self._advertised = advertised
        self._outbox = outbox

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        self._endpoint = endpoint(transport.get_extra_info("sockname"), self._advertised)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        try:
            requests = self._session.receive(data)
        except ProtocolError as error:
            log.warning("closing a DAX connection: %s", error)
            self._close()
            return
        self._pending.extend(requests)
        if self._pending and self._worker is None:
            self._idle.clear()
            self._advance()
        if len(self._pending) > MAX_PENDING and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._pending.clear()
        self._idle.cancel()
        if self._worker is not None:
            self._worker.cancel()
        if self._forget is not None:
            forget, self._forget = self._forget, None
            forget(self)

    def _advance(self) -> None:
        """Answer what is pending inline until an answer has to wait; a task carries on
        from there."""
        if self._carrier is None:
            self._carrier = Carrier(self._loop)
        while self._pending and self._transport is not None and not self._closed:
            answer = self._service.answer(self._pending.popleft(), self._endpoint)
            try:
                done, value = first_step(answer, self._carrier)
            except Exception:  # the service answers its own failures: this is a fault
                log.exception("fault while answering a DAX request")
                self._close()
                return
            if not done:
                self._worker = task = self._loop.create_task(self._work(answer, value))
                self._carrier.bind(task)
                return
            if not self._sent(value):
                return
        self._arm_idle()

    async def _work(self, first: Coroutine[Any, Any, bytes | None], yielded: Any) -> None:
        """The reply of the request that waited, then those queued behind it."""
        try:
            reply = await resume(first, yielded)
            assert self._carrier is not None
            self._carrier.bind(None)
            while self._sent(reply) and self._pending:
                reply = await self._service.answer(self._pending.popleft(), self._endpoint)
        except Exception:  # as in _advance: the service answers its own failures
            log.exception("fault while answering a DAX request")
            self._close()
        finally:
            self._worker = None
        if self._transport is not None and not self._closed:
            self._arm_idle()

    def _sent(self, reply: bytes | None) -> bool:
        """Write ``reply``; False when the connection is gone or closes after it."""
        if self._transport is None:
            return False
        if reply is not None:
            if self._outbox is not None:
                self._outbox.write(self._transport, reply)
            else:
                self._transport.write(reply)
        if self._stopping and reply is not None:
            self._close()  # the reply under way is sent; what waits behind it is not
            return False
        if self._paused and len(self._pending) <= MAX_PENDING // 2:
            self._paused = False
            self._transport.resume_reading()
        return True

    @property
    def busy(self) -> bool:
        """A request is being answered or waits to be."""
        return self._worker is not None or bool(self._pending)

    def shutdown(self) -> None:
        """Close now if idle; else once the reply under way is written."""
        self._stopping = True
        if not self.busy:
            self._close()

    def cut(self) -> None:
        """Stop whatever is running, unanswered, and drop the connection."""
        if self._worker is not None:
            self._worker.cancel()
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close the connection (what was written is still sent)."""
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._idle.cancel()
        if self._transport is not None:
            if self._outbox is not None:
                self._outbox.flush()
            self._transport.close()

    def _arm_idle(self) -> None:
        """Idle from now (the deadline moves; no timer per request)."""
        if self._idle_timeout and not self._closed:
            self._idle.set(self._loop.time() + self._idle_timeout)

    def _on_idle(self) -> None:
        if self.busy or self._closed:
            return
        log.debug("closing an idle DAX client connection")
        self._close()
