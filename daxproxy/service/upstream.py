"""The upstream: one DynamoDB-compatible server behind a small interface.

:class:`Upstream` is what the rest of the proxy sees: send a target and a body, get back the
status, headers and exact body bytes, or a :class:`DynamoDBError` when the upstream could not
answer. :class:`HttpUpstream` is the real one: a pooled keep-alive aiohttp client that signs
every request, bounds every call by the connect and request timeouts, and maps aiohttp's
exceptions to DynamoDB's errors in one place (:func:`_failure`). It writes each request's
head itself, as bytes, and sends it through aiohttp's pool and response parser
(:class:`~daxproxy.service.exchange.Exchange`) rather than ``ClientSession.post``, whose
per-request machinery cost more CPU than the rest of a forwarded request; client headers
go upstream as the bytes they arrived as. An
:class:`UpstreamObserver`, when given, hears how long each answered request took and why
each unanswered one got no answer (``timeout`` or ``connection``); readiness pings are not
reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import aiohttp

from daxproxy.core.config import Endpoints
from daxproxy.core.errors import DynamoDBError, InternalServerError, ServiceUnavailable
from daxproxy.core.wire import JSON_CONTENT_TYPE, Headers, RawHeaders, Target, header
from daxproxy.service.deadlines import Deadlines
from daxproxy.service.exchange import Exchange
from daxproxy.service.signing import Signer

log = logging.getLogger(__name__)


class UpstreamResponse:
    """An answer as it came: status, headers, the exact body bytes. A plain slotted class:
    one per upstream request, and a frozen dataclass costs several times as much to build."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"UpstreamResponse({self.status}, {len(self.body)} bytes)"


class Upstream(Protocol):
    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        """Forward one request; raise DynamoDBError when no answer came back."""
        ...

    async def ping(self) -> bool:
        """Whether the upstream answers right now."""
        ...

    async def close(self) -> None: ...


class UpstreamObserver(Protocol):
    def upstream_answered(self, target: Target, seconds: float) -> None:
        """An answer came back (any status), ``seconds`` after the first attempt began."""
        ...

    def upstream_failed(self, target: Target, reason: str) -> None:
        """No answer came back: ``timeout`` (to connect or to answer) or ``connection``
        (refused, reset or dropped)."""
        ...


# Every header the signer sets (the token only with temporary credentials), and the framing
# the exchange sets: the caller's copies of them are dropped.
_SET_HERE = frozenset(
    {
        "host",
        "content-type",
        "x-amz-target",
        "x-amz-date",
        "x-amz-security-token",
        "authorization",
        "content-length",
        "transfer-encoding",
    }
)
_SET_HERE_RAW = frozenset(name.encode() for name in _SET_HERE)
# A pooled connection the server has closed fails before any byte of an answer arrives;
# a request that is safe to repeat is sent once more on a fresh connection.
_STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class HttpUpstream:
    def __init__(
        self,
        endpoints: Endpoints,
        signer: Signer,
        *,
        connect_timeout: float,
        request_timeout: float,
        max_connections: int,
        observer: UpstreamObserver | None = None,
    ) -> None:
        self.endpoints = endpoints
        self._observer = observer
        self._signer = signer
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30)
        # Readiness pings only; requests go through the exchanges, on the same pool.
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The body goes back to the client exactly as the upstream encoded it.
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        self._deadlines: Deadlines | None = None
        self._dynamodb = Exchange(connector, endpoints.dynamodb, self._timeout)
        self._streams = Exchange(connector, endpoints.streams, self._timeout)

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        exchange = self._streams if target.is_streams else self._dynamodb
        content_type = header(headers, "content-type")
        if content_type is None:
            content_type = JSON_CONTENT_TYPE
        if "\r" in content_type or "\n" in content_type:  # the one client value signed
            raise ValueError("a CR or LF in an upstream request header")
        signed = await self._signer.lines(exchange.url_text, target.header, content_type, body)
        head = _head(exchange.path, signed, headers, len(body))
        started = time.perf_counter()
        attempts = 2 if retry_safe else 1
        for attempt in range(1, attempts + 1):
            try:
                deadlines = self._deadlines or self._start_deadlines()
                status, raw_headers, payload = await deadlines.bound(exchange.post(head, body))
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing to resend
                raise self._failure(target, exc) from None
            except _STALE_CONNECTION as exc:
                if attempt == attempts:
                    raise self._failure(target, exc) from None
                log.info(
                    "upstream connection dropped (%s); resending %s",
                    type(exc).__name__,
                    target.operation,
                )
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._failure(target, exc) from None
            else:
                if self._observer is not None:
                    self._observer.upstream_answered(target, time.perf_counter() - started)
                return UpstreamResponse(status, _decode_headers(raw_headers), payload)
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_deadlines(self) -> Deadlines:
        """The bound on each attempt, on the loop the first request runs on."""
        self._deadlines = Deadlines(asyncio.get_running_loop(), self._request_timeout)
        return self._deadlines

    def _failure(self, target: Target, exc: BaseException) -> DynamoDBError:
        if self._observer is not None:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            self._observer.upstream_failed(target, reason)
        return _failure(exc, self._request_timeout)

    async def ping(self) -> bool:
        """A ListTables with Limit 1: any answer short of a 5xx means the upstream serves."""
        target = Target("DynamoDB_20120810", "ListTables")
        timeout = aiohttp.ClientTimeout(
            total=self._connect_timeout + 1.0, sock_connect=self._connect_timeout
        )
        body = b'{"Limit":1}'
        url = self.endpoints.dynamodb
        try:
            signed = await self._signer.sign(url, target.header, JSON_CONTENT_TYPE, body)
            async with self._session.post(
                url, data=body, headers=[*signed, ("Accept-Encoding", "identity")], timeout=timeout
            ) as resp:
                await resp.read()
                return resp.status < 500
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def close(self) -> None:
        await self._session.close()


def _head(path: str, signed: str, headers: Headers, length: int) -> bytes:
    """The request line and headers: the signed ones (header lines), the caller's others
    (raw ones as the bytes they came as), the length."""
    start = f"POST {path} HTTP/1.1\r\n{signed}".encode()
    if type(headers) is RawHeaders:
        lines = [b"%s: %s\r\n" % f for f in headers.fields if f[0].lower() not in _SET_HERE_RAW]
    else:
        lines = [
            b"%s: %s\r\n" % (_encode(name), _encode(value))
            for name, value in headers
            if name.lower() not in _SET_HERE
        ]
    head = b"".join([start, *lines, b"Content-Length: %d\r\n\r\n" % length])
    # Each line ends in the one CR LF put there: any other is a header injection.
    expected = start.count(b"\n") + len(lines) + 2
    if head.count(b"\n") != expected or head.count(b"\r") != expected:
        raise ValueError("a CR or LF in an upstream request header")
    return head


def _encode(text: str) -> bytes:
    try:
        return text.encode("latin-1")  # a raw header decoded as latin-1: the bytes it came as
    except UnicodeEncodeError:
        return text.encode()


def _decode_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def _failure(exc: BaseException, request_timeout: float) -> DynamoDBError:
    """The DynamoDB error a client gets when the upstream gave no answer.

    503 when the request certainly never reached the upstream (SDKs retry it as a
    throttle-free server error); 500 when it may have, because a write may then have been
    applied, exactly as DynamoDB's own 500s say.
    """
    if isinstance(exc, (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError)):
        log.warning("upstream unreachable: %s", type(exc).__name__)
        return ServiceUnavailable("The upstream DynamoDB endpoint could not be reached")
    if isinstance(exc, asyncio.TimeoutError):
        log.warning("upstream gave no answer within %.3f s", request_timeout)
        return InternalServerError(
            f"The upstream DynamoDB endpoint did not answer within {request_timeout:g} s"
        )
    log.warning("upstream connection failed: %s", type(exc).__name__)
    return InternalServerError("The connection to the upstream DynamoDB endpoint failed")
