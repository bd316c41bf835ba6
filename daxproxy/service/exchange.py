"""One HTTP/1.1 POST over aiohttp's connection pool and response parser, with no more.

``ClientSession.post`` builds a dozen objects per request the proxy never needs (a merged
header multidict, a ``ClientRequest`` with its cookie, auth, proxy and payload machinery,
a ``ClientResponse``, trace and timer contexts): about 80 µs of CPU per request here,
more than the rest of a forwarded request. :class:`Exchange` keeps what matters of
aiohttp (its ``TCPConnector``: pooling, keep-alive, limits, connect timeouts, TLS; its
``ResponseHandler`` protocol and C response parser: framing, chunked bodies, errors) and
writes the request head the caller built as bytes, about half the cost.

Contract: :meth:`Exchange.post` sends ``head`` (the request line and header lines, ending
with the blank line) and ``body`` on a pooled connection to the exchange's URL and returns
the final answer's status, raw headers and exact body bytes (never decompressed; a body
without a length is read to the end of the connection). The connection goes back to the
pool only when the answer is complete, the server keeps it open and all of the request was
written; any failure or cancellation closes it. Errors are aiohttp's, as
``ClientSession.post`` raises them: ``ServerDisconnectedError`` and ``ClientOSError`` from
a pooled connection that died, ``ClientConnectorError`` when no connection could be made,
``ConnectionTimeoutError`` when making one took over ``sock_connect``,
``ClientPayloadError`` for a broken body, and ``ClientResponseError`` for an answer that is
not HTTP. The caller bounds the whole exchange (:mod:`daxproxy.service.deadlines`).

It relies on these aiohttp 3.14 interfaces (pinned below 3.15 in pyproject.toml, and
exercised by tests/unit/test_upstream.py and test_upstream_framing.py):
``BaseConnector.connect(req, traces, timeout)`` with a ``ClientRequest`` as the pool's key,
``Connection.protocol``/``transport``/``release``/``close``,
``ResponseHandler.set_response_params`` and ``read()``, and the ``StreamReader`` it yields
(``is_eof``, ``read_nowait``, ``read``).
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.client_reqrep import ClientRequest, RequestInfo
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

RawFields = tuple[tuple[bytes, bytes], ...]


class Exchange:
    """POSTs to one URL through ``connector``."""

    __slots__ = ("_connector", "_key", "_timeout", "path", "url", "url_text")

    def __init__(
        self, connector: aiohttp.BaseConnector, url: str, timeout: aiohttp.ClientTimeout
    ) -> None:
        self.url_text = url
        self.url = URL(url)
        # The path and query string as the request line carries them.
        self.path = self.url.raw_path_qs or "/"
        self._connector = connector
        self._timeout = timeout
        self._key: ClientRequest | None = None  # made on first use: it wants the loop

    async def post(self, head: bytes, body: bytes) -> tuple[int, RawFields, bytes]:
        key = self._key
        if key is None:
            key = self._key = ClientRequest(
                "POST", self.url, loop=asyncio.get_running_loop(), ssl=True
            )
        try:
            connection = await self._connector.connect(key, traces=[], timeout=self._timeout)
        except TimeoutError as exc:  # sock_connect (the caller's bound cancels)
            raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {self.url}") from exc
        try:
            protocol, transport = connection.protocol, connection.transport
            if protocol is None or transport is None or transport.is_closing():
                raise aiohttp.ServerDisconnectedError()
            protocol.set_response_params(read_until_eof=True, auto_decompress=False)
            if len(body) < 64 * 1024:
                transport.write(head + body)
            else:  # no copy of a large body
                transport.writelines((head, body))
            while True:
                try:
                    message, payload = await protocol.read()
                except HttpProcessingError as exc:
                    raise self._unreadable(exc) from exc
                if not 100 <= message.code <= 199 or message.code == 101:
                    break
            # An answer that came whole (most do: one read) is taken as it lies.
            data = payload.read_nowait() if payload.is_eof() else await payload.read()
        except BaseException:
            connection.close()
            raise
        if transport.get_write_buffer_size():  # answered before it read all the request:
            # the rest of the body would be read as the next request
            connection.close()
        else:
            connection.release()  # closed instead when the server will close it
        return message.code, message.raw_headers, data

    def _unreadable(self, exc: HttpProcessingError) -> aiohttp.ClientResponseError:
        """What ``ClientSession.post`` raises for an answer that is not HTTP."""
        info = RequestInfo(self.url, "POST", CIMultiDictProxy(CIMultiDict()), self.url)
        return aiohttp.ClientResponseError(
            info, (), status=exc.code, message=exc.message, headers=exc.headers
        )
