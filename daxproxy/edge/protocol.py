"""One client connection: HTTP/1.1 parsed by httptools (llhttp), answered in order.

:class:`HttpProtocol` is an ``asyncio.Protocol``; the server (:mod:`daxproxy.edge.server`)
makes one per accepted connection and hands it an :class:`Edge`, what all connections
share. Its :class:`~daxproxy.edge.reader.RequestReader` reads the requests (llhttp's
callbacks, the limits on a head and a body); the protocol answers them. Its contract:

- **Answers in order.** Keep-alive and pipelined requests are answered in the order they
  came; one request is handled at a time. A request whose handler does not wait (a cache
  hit, whose answer the handler returns at once; a coroutine that ends in its first step,
  run there with ``coro.send(None)``) is answered inline, inside ``data_received``, and no
  task, future or timer is made for it. A remembered GetItem hit is answered before any
  request is built: the reader offers its target, encoding and body to the route's ``quick``
  way (:meth:`daxproxy.service.proxy.Proxy.quick`), whose ready answer is written as any
  other (the same bytes), when nothing is owed before it. Only a handler that waits (a miss,
  a write) gets a task, which continues that same coroutine
  (:func:`daxproxy.edge.inline.resume`) and then answers whatever was pipelined behind it.
  Answers go out through the server's :class:`~daxproxy.edge.outbox.Outbox` (a turn's first
  at once, the rest together at the turn's end); whatever the connection writes or does to
  its transport itself (a ``100 Continue``, a large answer in two writes, a close) comes
  after what the outbox holds.
- **Flow control.** While a request is being handled in a task and another is waiting
  behind it, or while the transport's write buffer is full, the connection stops reading.
- **Limits** (``Edge.limits``). A request line, or a header field (name and value), longer
  than ``max_header_bytes``, more than 128 header fields, or a head over 130 of those
  fields' worth of bytes (and 1 MiB): 400 ``SerializationException``, then close (the
  fields' bounds once the head is in). A
  ``Content-Length`` over ``max_body_bytes``: 413 ``RequestEntityTooLargeException`` once
  the body has been read and dropped (at once with an ``Expect``, whose client has not sent
  it), then close; a (chunked) body found to be over it while read: 413, then close.
  ``Expect: 100-continue`` is honoured (the 100 is sent once the request is at the front);
  any other ``Expect``: 417, then close. Malformed HTTP (llhttp's verdict): 400
  ``SerializationException``, logged at DEBUG only, then close.
- **Timeouts**, as one :class:`~daxproxy.edge.deadline.Deadline` per connection (one lazily
  re-armed loop timer, which a request moves rather than re-arms): from the first byte of
  a request the client has ``read_timeout`` to send all of it, else 408
  ``RequestTimeoutException`` (after the answers before it) and close; with no request
  under way (the first one of a connection included) the connection closes after
  ``idle_timeout``. While reading is paused the read clock stops, and restarts on resume.
- **Errors.** Every error the edge answers itself is in DynamoDB's JSON shape with a fresh
  request id and CRC; a DynamoDB request it refuses once its headers are in (405, 413, 417,
  408, an unreadable body) is reported to ``Proxy.refused``. An exception from a handler
  is logged and answered 500 ``InternalServerError``, without a traceback on the wire.
- **DAX's protocol on the same port.** When a connection's first bytes begin with DAX's
  preamble's first byte (``g``: no HTTP method begins so), and the server serves DAX
  (``Edge.dax_in_place_of``), the transport is handed to that DAX connection with those
  bytes, and this protocol is done with it. One flag test per read is the HTTP side's cost.
- **Shutdown** (:meth:`HttpProtocol.shutdown`): an idle connection closes at once; a busy
  one finishes the request under way, answers it with ``Connection: close`` and closes.
  :meth:`HttpProtocol.cut` cancels what is still running and aborts the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol, cast

import httptools

from daxproxy.core import wire
from daxproxy.core.errors import (
    DynamoDBError,
    InternalServerError,
    SerializationException,
)
from daxproxy.edge import answers
from daxproxy.edge.dax_protocol import FIRST_BYTE
from daxproxy.edge.deadline import Deadline
from daxproxy.edge.inline import Carrier, first_step, resume
from daxproxy.edge.outbox import Outbox
from daxproxy.edge.reader import Edge as ReadingEdge
from daxproxy.edge.reader import Refusal, RequestReader, Stop
from daxproxy.edge.routes import Quick, Route
from daxproxy.service.proxy import ClientRequest

log = logging.getLogger(__name__)

_IDLE, _READ = 1, 2


class Edge(ReadingEdge, Protocol):
    """What every connection of one server shares (:class:`daxproxy.edge.server.EdgeServer`)."""

    outbox: Outbox

    def register(self, connection: HttpProtocol) -> bool: ...
    def forget(self, connection: HttpProtocol) -> None: ...
    def dax_in_place_of(self, connection: HttpProtocol) -> asyncio.Protocol | None: ...


# A request received and not yet answered: route, request, keep-alive, HEAD, begin time.
_Queued = tuple[Route, ClientRequest, bool, bool, float]


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_broken",
        "_carrier",
        "_closed",
        "_continue_owed",
        "_deadline",
        "_deadline_kind",
        "_edge",
        "_eof",
        "_first",
        "_limits",
        "_loop",
        "_outbox",
        "_queue",
        "_read_paused",
        "_reader",
        "_router",
        "_task",
        "_transport",
        "_write_paused",
    )

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self._loop = edge.loop
        self._limits = edge.limits
        self._router = edge.router
        self._outbox = edge.outbox
        self._reader = RequestReader(self, edge)
        self._transport: asyncio.Transport | None = None
        self._carrier = Carrier(self._loop)
        self._queue: deque[_Queued] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = self._broken = self._eof = False
        self._first = True  # no byte read yet: DAX's or HTTP's is still to tell
        self._read_paused = self._write_paused = False
        self._continue_owed = False
        self._deadline = Deadline(self._loop, self._on_deadline)
        self._deadline_kind = _IDLE

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self._edge.register(self):  # past the connection cap: aborted unread
            self._closed = True
            transport.abort()
            return
        self._transport = transport
        self._reader.began = now = self._loop.time()
        self._set_deadline(now + self._limits.idle_timeout, _IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._transport = None
        self._closed = True
        self._queue.clear()
        self._deadline.cancel()
        # A request being handled runs to its end (a write must not be cut half-way by a
        # client that went away); its answer goes nowhere.
        self._edge.forget(self)

    def eof_received(self) -> bool | None:
        """The client will send no more: answer what is received, then close."""
        self._end_of_input()
        return True if self._task is not None or self._queue else None

    def _end_of_input(self) -> None:
        """No more requests: answer those received (a request half-sent gets nothing),
        then close."""
        self._broken = self._eof = True
        if self._task is None and not self._queue:
            self._close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._advance()

    def data_received(self, data: bytes) -> None:
        if self._broken or self._closed:
            return
        if self._first:
            self._first = False
            if data[:1] == FIRST_BYTE and self._to_dax(data):
                return
        reader = self._reader
        try:
            too_long = reader.feed(data)
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc.__context__)
        except httptools.HttpParserUpgrade:
            self._end_of_input()  # what follows is not HTTP: answer what came, then close
        except httptools.HttpParserError as exc:
            log.debug("unparsable request: %s", exc)
            report = reader.receiving and not reader.in_head  # a broken body
            self._fail(SerializationException(f"Malformed HTTP request: {exc}"[:512]), None, report)
        except Exception:  # never out of a protocol callback
            log.exception("fault while reading a request")
            self._fail(InternalServerError("The proxy failed to handle the request"))
        else:
            if too_long:
                self._fail(self._limits.header_error())
        if not self._closed:
            self._clock_after_read(reader)

    def _clock_after_read(self, reader: RequestReader) -> None:
        """The deadline once a read is parsed: a request still under way has
        ``read_timeout`` from its first byte (none while reading is paused); with none under
        way nor being answered, the connection is idle."""
        if reader.receiving:
            if not self._read_paused:
                self._set_deadline(reader.began + self._limits.read_timeout, _READ)
        elif self._task is None and not self._queue:
            # The idle clock runs from the last request's first byte, which an inline
            # answer follows within microseconds.
            self._set_deadline(reader.began + self._limits.idle_timeout, _IDLE)

    def _to_dax(self, data: bytes) -> bool:
        """Hand the connection, and its first ``data``, to a DAX connection; False when
        the server does not serve DAX (the bytes are then read as HTTP, and refused)."""
        dax = self._edge.dax_in_place_of(self)
        if dax is None:
            return False
        transport, self._transport = self._transport, None
        assert transport is not None  # set while the connection is not closed
        self._closed = True
        self._deadline.cancel()
        transport.set_protocol(dax)
        dax.connection_made(transport)
        dax.data_received(data)
        return True

    def _callback_failed(self, cause: BaseException | None) -> None:
        if isinstance(cause, Stop):
            self._broken = True
        elif isinstance(cause, Refusal):
            self._fail(cause.error, cause.status, cause.report)
        else:
            log.error("fault while reading a request", exc_info=cause)
            self._fail(InternalServerError("The proxy failed to handle the request"))

    # What the reader tells the connection (daxproxy.edge.reader.Connection) ----------------

    def request_began(self) -> None:
        # Its read deadline is set once the read is parsed (data_received), if it is still
        # incomplete then: a request that came whole needs none.
        if self._broken or self._closed:
            raise Stop()

    def received(
        self, route: Route, request: ClientRequest, keep_alive: bool, head_only: bool, began: float
    ) -> None:
        if self._task is None and not self._queue and not self._write_paused:
            self._answer(route, request, keep_alive, head_only, began)
        else:
            self._queue.append((route, request, keep_alive, head_only, began))
            self._clear_deadline()
            if self._task is not None or len(self._queue) > 1:
                self._pause_reading()

    def received_quick(
        self,
        quick: Quick,
        target: bytes | None,
        encoding: bytes | None,
        body: bytes,
        *,
        keep_alive: bool,
        head_only: bool,
    ) -> bool:
        if self._task is not None or self._queue or self._write_paused:
            return False  # answered in its turn, as any request
        try:
            ready = quick(target, encoding, body)
        except Exception:  # the handler answers it (or its fault) instead
            log.exception("fault while answering %s from a ready answer", target)
            return False
        if ready is None:
            return False
        if keep_alive and not self._edge.stopping:  # _send's way, in fewer steps (no HEAD
            data = answers.joined(ready)  # reaches DynamoDB's route, none comes after EOF)
            if data is not None:
                assert self._transport is not None  # the connection reads: it is open
                self._outbox.write(self._transport, data)
                return True
        self._send(ready, not keep_alive, head_only)
        return True

    # Answering ------------------------------------------------------------------------------

    def _answer(
        self, route: Route, request: ClientRequest, keep_alive: bool, head_only: bool, began: float
    ) -> None:
        """Answer inline; a handler that waits continues in a task that answers it and
        then whatever queued up behind it."""
        if route.error is not None:
            self._send_refusal(route, request.target, keep_alive, head_only, began)
            return
        try:
            result = route.handler(request)  # type: ignore[misc]
            if isinstance(result, wire.WireResponse):
                self._send(result, not keep_alive, head_only)
                return
            done, value = first_step(result, self._carrier)
        except Exception:
            self._send(self._fault(request), not keep_alive, head_only)
            return
        if done:
            assert isinstance(value, wire.WireResponse)
            self._send(value, not keep_alive, head_only)
            return
        self._clear_deadline()
        self._task = task = self._loop.create_task(
            self._continue(result, value, request, keep_alive, head_only)
        )
        self._carrier.bind(task)

    async def _continue(
        self,
        coro: Coroutine[Any, Any, wire.WireResponse],
        yielded: object,
        request: ClientRequest,
        keep_alive: bool,
        head_only: bool,
    ) -> None:
        """The task of a request that waited: its answer, then those queued behind it."""
        try:
            try:
                answer = await resume(coro, yielded)
            except Exception:
                answer = self._fault(request)
            self._carrier.bind(None)
            self._send(answer, not keep_alive, head_only)
            queue = self._queue
            while queue and not self._closed and not self._write_paused:
                route, request, keep_alive, head_only, began = queue.popleft()
                if route.error is not None:
                    self._send_refusal(route, request.target, keep_alive, head_only, began)
                    continue
                try:
                    result = route.handler(request)  # type: ignore[misc]
                    if not isinstance(result, wire.WireResponse):
                        result = await result
                except Exception:
                    result = self._fault(request)
                self._send(result, not keep_alive, head_only)
        except Exception:  # never left for the task's "exception never retrieved"
            log.exception("fault while answering")
            self._close()
        finally:
            self._task = None
            self._carrier.bind(None)
        self._settled()

    def _settled(self) -> None:
        """No request is being handled: read again, arm the idle clock, send a 100 owed."""
        if self._closed or self._queue or self._task is not None:
            return
        if self._eof:
            self._close()
            return
        self._resume_reading()
        if not self._reader.receiving:
            self._set_deadline(self._loop.time() + self._limits.idle_timeout, _IDLE)
        elif self._continue_owed:
            self.send_continue()

    def _advance(self) -> None:
        """Answer queued requests inline (outside any task) until one has to wait."""
        queue = self._queue
        while queue and self._task is None and not self._closed and not self._write_paused:
            self._answer(*queue.popleft())
        self._settled()

    def _send(
        self, answer: wire.WireResponse | wire.ReadyAnswer, close: bool, head_only: bool = False
    ) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        close = close or self._edge.stopping or (self._eof and not self._queue)
        try:
            data, rest = answers.encode(answer, close=close, head_only=head_only)
        except Exception:  # an unencodable header value from a handler
            log.exception("fault while writing an answer")
            data, rest = answers.encode(
                answers.error(InternalServerError("The proxy failed to handle the request")),
                close=True,
            )
            close = True
        if rest is None and not close:
            self._outbox.write(transport, data)
            return
        self._outbox.flush()
        transport.write(data)
        if rest is not None:
            transport.write(rest)
        if close:
            self._close()

    def _send_refusal(
        self, route: Route, target: str | None, keep_alive: bool, head_only: bool, began: float
    ) -> None:
        assert route.error is not None
        answer = answers.error(route.error, route.status)
        if route.refusal:
            self._router.refused(target, answer, self._loop.time() - began)
        self._send(answer, not keep_alive, head_only)

    def send_continue(self) -> None:
        if self._task is None and not self._queue and self._transport is not None:
            self._continue_owed = False
            self._outbox.flush()
            self._transport.write(answers.CONTINUE)
        else:  # owed once the answers before this request are out
            self._continue_owed = True

    def _fault(self, request: ClientRequest) -> wire.WireResponse:
        log.exception("fault while handling %s", request.target or request.raw_path)
        return answers.error(InternalServerError("The proxy failed to handle the request"))

    def _fail(self, error: DynamoDBError, status: int | None = None, report: bool = False) -> None:
        """Answer ``error`` after the answers owed before it, read nothing more, close."""
        self._broken = True
        self._pause_reading()
        reader = self._reader
        target = reader.target
        route = Route(error=error, status=status, refusal=report)
        request = ClientRequest((), b"", target)
        began = reader.began
        reader.reset()
        if self._task is None and not self._queue:
            self._send_refusal(route, target, False, False, began)
        else:
            self._queue.append((route, request, False, False, began))

    def _close(self) -> None:
        self._closed = True
        self._queue.clear()
        if self._transport is not None:
            self._outbox.flush()
            self._transport.close()

    # Flow control and deadlines -------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
            if self._reader.receiving:  # the read clock stops while the proxy is not reading
                self._clear_deadline()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._broken and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
            if self._reader.receiving:  # and starts again
                self._set_deadline(self._loop.time() + self._limits.read_timeout, _READ)

    def _set_deadline(self, when: float, kind: int) -> None:
        self._deadline_kind = kind
        self._deadline.set(when)

    def _clear_deadline(self) -> None:
        self._deadline.clear()

    def _on_deadline(self) -> None:
        if self._closed:
            return
        if self._deadline_kind == _IDLE:
            log.debug("closing an idle client connection")
            self._close()
            return
        log.debug("client read timeout: request incomplete after %g s", self._limits.read_timeout)
        report = self._reader.receiving and not self._reader.in_head  # by its headers
        self._fail(self._limits.read_timeout_error(), report=report)

    # Shutdown -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being received, handled or waits to be answered."""
        return self._reader.receiving or self._task is not None or bool(self._queue)

    def shutdown(self) -> None:
        """Close now if idle; else after the answer under way (``Edge.stopping`` is set)."""
        if not self.busy:
            self._close()

    def cut(self) -> None:
        """Stop whatever is running, unanswered, and drop the connection."""
        if self._task is not None:
            self._task.cancel()
        self._closed = True
        if self._transport is not None:
            self._transport.abort()
