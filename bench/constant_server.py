"""Constant-answer servers: the ceilings for a Python server on this machine.

Contract: ``python -m bench.constant_server --port N [--host H] [--body-file F] [--kind K]``
serves until SIGINT or SIGTERM. Every POST, on any path, is answered 200 with one fixed body
(the file's bytes, else a small GetItem answer), with ``Content-Type:
application/x-amz-json-1.0``, an ``x-amzn-RequestId`` and a correct ``x-amz-crc32``;
``GET /healthz`` answers 200. Each reads the whole request body, as any real server must,
and does nothing else: no parsing of the body, no logging. Two kinds:

- ``aiohttp`` (the default): an aiohttp ``web.Application``, the ceiling for any aiohttp
  server here (the proxy's edge before it moved to a Protocol);
- ``protocol``: an ``asyncio.Protocol`` with httptools (llhttp) parsing, on uvloop where it
  is installed, each answer written from the parser's ``on_message_complete`` callback: the
  ceiling for any Python server here, built as the proxy's edge is
  (``daxproxy/edge/protocol.py``). Keep-alive and pipelining; ``Connection: close`` honoured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import zlib
from collections.abc import Sequence
from pathlib import Path

CONTENT_TYPE = "application/x-amz-json-1.0"
REQUEST_ID = "CONSTANT" + "0" * 44  # 52 characters, like DynamoDB's
KINDS = ("aiohttp", "protocol")
DEFAULT_BODY = json.dumps(
    {"Item": {"pk": {"S": "bench#0000000"}, "payload": {"S": "constant"}}}
).encode()


def response_headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        "x-amzn-RequestId": REQUEST_ID,
        "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
    }


def create_app(body: bytes):  # type: ignore[no-untyped-def]
    from aiohttp import web

    headers = response_headers(body)

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/{path:.*}", answer)
    return app


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_aiohttp(host: str, port: int, body: bytes) -> None:
    from aiohttp import web

    runner = web.AppRunner(create_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        await _until_signalled()
    finally:
        await runner.cleanup()


def raw_answer(body: bytes, close: bool = False) -> bytes:
    """The whole HTTP/1.1 answer, head and body, as the protocol server writes it."""
    head = "HTTP/1.1 200 OK\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in response_headers(body).items()
    )
    head += f"Content-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n" if close else "\r\n"
    return head.encode() + body


_HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class ConstantProtocol(asyncio.Protocol):
    """One connection: httptools parses, every complete POST gets the same bytes."""

    def __init__(self, answer: bytes, closing_answer: bytes) -> None:
        import httptools

        self._answer = answer
        self._closing = closing_answer
        self._parser = httptools.HttpRequestParser(self)
        self._error = httptools.HttpParserError
        self._transport: asyncio.Transport | None = None
        self._get = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except self._error:
            assert self._transport is not None
            self._transport.close()

    def on_headers_complete(self) -> None:
        self._get = self._parser.get_method() == b"GET"

    def on_message_complete(self) -> None:
        transport = self._transport
        assert transport is not None
        if self._get:
            transport.write(_HEALTHY)
        elif self._parser.should_keep_alive():
            transport.write(self._answer)
        else:
            transport.write(self._closing)
            transport.close()


async def serve_protocol(host: str, port: int, body: bytes) -> None:
    loop = asyncio.get_running_loop()
    answer, closing = raw_answer(body), raw_answer(body, close=True)
    server = await loop.create_server(
        lambda: ConstantProtocol(answer, closing), host, port, reuse_address=True, backlog=1024
    )
    try:
        await _until_signalled()
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.constant_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, help="the response body (default: built in)")
    parser.add_argument("--kind", choices=KINDS, default="aiohttp")
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes() if args.body_file else DEFAULT_BODY
    if args.kind == "protocol":
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve_protocol(args.host, args.port, body))
        else:
            uvloop.run(serve_protocol(args.host, args.port, body))
    else:
        asyncio.run(serve_aiohttp(args.host, args.port, body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
