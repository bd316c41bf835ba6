"""Reading requests off one client connection: llhttp's callbacks, and the limits on a head
and a body.

A :class:`RequestReader` belongs to one :class:`~daxproxy.edge.protocol.HttpProtocol` (its
:class:`Connection`): :meth:`RequestReader.feed` gives llhttp the bytes read, and the
callbacks pick out the header fields the proxy reads (``X-Amz-Target``,
``Content-Encoding``, ``Content-Length``, ``Expect``), route the request by its method and
path once its head is in, keep its body, and hand each complete request to the connection
(:meth:`Connection.received`) with its route, whether the connection stays open, whether it
was a HEAD and when its first byte came; a request whose route has a ``quick`` way is
first offered to the connection as its target, encoding and body bytes
(:meth:`Connection.received_quick`), and only built when that does not answer it. A read
that begins at a request's start is first offered to the quick lane
(:mod:`daxproxy.edge.lane`): when the lane reads it whole, its target and body go to
DynamoDB's ``quick`` way, and when that answers it, llhttp here never sees those bytes. A
callback that refuses the request raises
:class:`Refusal` (the connection answers its error, then closes); :class:`Stop` means the
connection reads no further. The limits and what each gives are in
:mod:`daxproxy.edge.protocol`'s contract.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools

from daxproxy.core.errors import (
    DynamoDBError,
    RequestEntityTooLargeException,
    SerializationException,
)
from daxproxy.core.wire import RawHeaders
from daxproxy.edge.lane import Lane
from daxproxy.edge.limits import (
    KNOWN_FIELDS,
    MAX_HEADER_FIELDS,
    TARGET,
    WATCHED_FIELDS,
    Limits,
)
from daxproxy.edge.routes import Quick, Route, Router
from daxproxy.service.proxy import ClientRequest

_READ_SLACK = 1024 * 1024  # more than one read of asyncio's or uvloop's transports
_KNOWN_FIELDS_GET = KNOWN_FIELDS.get  # run six times a request


class Refusal(Exception):
    """Raised in a parser callback: answer ``error`` (then close); ``report``: count it as
    a refused DynamoDB request."""

    def __init__(self, error: DynamoDBError, status: int | None = None, report: bool = False):
        super().__init__(error.message)
        self.error, self.status, self.report = error, status, report


class Stop(Exception):
    """Raised in a parser callback: parse no further (the connection is closing)."""


class Edge(Protocol):
    """What the reader reads of its server (:class:`daxproxy.edge.server.EdgeServer`)."""

    loop: asyncio.AbstractEventLoop
    limits: Limits
    router: Router
    stopping: bool


class Connection(Protocol):
    """What the reader tells its connection."""

    def request_began(self) -> None:
        """A request's first byte came; raise :class:`Stop` if it is not to be read."""
        ...

    def send_continue(self) -> None:
        """Send ``100 Continue`` now, or once the answers owed before it are out."""
        ...

    def received(
        self, route: Route, request: ClientRequest, keep_alive: bool, head_only: bool, began: float
    ) -> None:
        """A complete request."""
        ...

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
        """A complete request whose route has a ``quick`` way: True when answered by it;
        False: not answered, and :meth:`received` gets it."""
        ...


class RequestReader:
    __slots__ = (
        "_body",
        "_body_size",
        "_connection",
        "_edge",
        "_fields",
        "_head_limit",
        "_head_only",
        "_head_seen",
        "_keep_alive",
        "_lane",
        "_limits",
        "_max_field",
        "_now",
        "_parser",
        "_quick",
        "_route",
        "_router",
        "_url",
        "_watched",
        "began",
        "in_head",
        "receiving",
    )

    def __init__(self, connection: Connection, edge: Edge) -> None:
        self._connection = connection
        self._edge = edge
        self._limits = limits = edge.limits
        self._max_field = limits.max_header_bytes
        self._router = edge.router
        self._now = edge.loop.time
        # A whole head's bound: its fields', with one read's worth of slack (the chunk a
        # head begins in is counted whole).
        self._head_limit = (limits.max_header_bytes + 4) * (MAX_HEADER_FIELDS + 2) + _READ_SLACK
        self._parser = httptools.HttpRequestParser(self)
        # Bytes after a "Connection: close" request are dropped, not a parse error.
        self._parser.set_dangerous_leniencies(lenient_data_after_close=True)
        # The quick way of "POST /" (DynamoDB's route), offered the requests the lane reads.
        self._quick = self._router.route(b"POST", b"/").quick
        self._lane = None if self._quick is None else Lane(self._max_field)
        self._head_seen = 0
        self.began = 0.0
        self.reset()

    def reset(self) -> None:
        """Nothing of a request received yet."""
        self.receiving = self.in_head = False
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        # Indexed by kind (TARGET, ENCODING, LENGTH, EXPECT): the last field of each.
        self._watched: list[bytes | None] = [None, None, None, None, None]
        self._body: list[bytes] = []
        self._body_size = 0
        self._route: Route | None = None

    @property
    def target(self) -> str | None:
        """The ``X-Amz-Target`` of the request being read, if its head gave one."""
        target = self._watched[TARGET]
        return None if target is None else target.decode("latin-1")

    def feed(self, data: bytes) -> bool:
        """Parse ``data``; True when a head is being read and has gone past its whole
        bound. httptools' errors, and :class:`Refusal` or :class:`Stop` as the cause of its
        ``HttpParserCallbackError``, propagate."""
        lane = self._lane
        if lane is not None and not self.receiving:  # at a request's start: the lane's first
            read = lane.read(data)
            if read is not None:
                self.began = self._now()
                assert self._quick is not None  # a reader has a lane only with a quick way
                if self._connection.received_quick(
                    self._quick, read[0], None, read[1], keep_alive=True, head_only=False
                ):
                    return False  # else the parser reads it, as it reads any
        # At least the bytes of any head in this chunk (which a head may begin in, after
        # another request's end), and of the chunks before it while a head continues.
        self._head_seen = (self._head_seen if self.in_head else 0) + len(data)
        self._parser.feed_data(data)
        return self.in_head and self._head_seen > self._head_limit

    # httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._connection.request_began()
        self.began = self._now()
        self.receiving = self.in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_header_bytes:
            raise Refusal(self._limits.header_error())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        kind = _KNOWN_FIELDS_GET(name)
        if kind is None:
            kind = WATCHED_FIELDS.get(name.lower())
        if kind:
            self._watched[kind] = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        # The fields' bounds, checked once the head is in (feed bounds a head that never
        # ends): no field can be too long in a head read in fewer bytes than one may have.
        fields = self._fields
        if self._head_seen > self._max_field:
            max_field = self._max_field
            if any(len(name) + len(value) > max_field for name, value in fields):
                raise Refusal(self._limits.header_error())
        if len(fields) > MAX_HEADER_FIELDS:
            raise Refusal(_fields_error())
        parser = self._parser
        method = parser.get_method()
        self._head_only = method == b"HEAD"
        self._keep_alive = parser.should_keep_alive() and not self._edge.stopping
        self._route = route = self._router.route(method, self._url)
        if not route.takes_body:
            return
        _, _, _, length, expect = self._watched
        if length is not None and int(length) > self._limits.max_body_bytes:
            if expect is not None:  # its client waits for a 100 before it sends the body
                raise Refusal(self._too_large(), report=True)
            # Its client sends the body before it reads an answer: the body is read and
            # dropped, then answered (in order), then the connection closes.
            self._route = Route(error=self._too_large(), refusal=True, takes_body=False)
            self._keep_alive = False
            return
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise Refusal(
                    SerializationException(f"Unsupported Expect: {expect[:100]!r}"),
                    417,
                    report=True,
                )
            if length != b"0":
                self._connection.send_continue()

    def on_body(self, body: bytes) -> None:
        route = self._route
        if route is None or not route.takes_body:
            return
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            raise Refusal(self._too_large(), report=True)
        self._body.append(body)

    def on_message_complete(self) -> None:
        route = self._route
        assert route is not None
        chunks = self._body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        _, target, encoding, _, _ = self._watched
        fields, url = self._fields, self._url
        self.reset()
        quick = route.quick
        if quick is not None and self._connection.received_quick(
            quick, target, encoding, body, keep_alive=self._keep_alive, head_only=self._head_only
        ):
            return
        request = ClientRequest(
            RawHeaders(fields),
            body,
            None if target is None else target.decode("latin-1"),
            None if encoding is None else encoding.decode("latin-1"),
            url.decode("latin-1"),
        )
        self._connection.received(route, request, self._keep_alive, self._head_only, self.began)

    def _too_large(self) -> RequestEntityTooLargeException:
        return RequestEntityTooLargeException(
            f"Request body exceeds the limit of {self._limits.max_body_bytes} bytes"
        )


def _fields_error() -> SerializationException:
    return SerializationException(f"More than {MAX_HEADER_FIELDS} header fields")
