"""A constant-response aiohttp server: the ceiling for any aiohttp server on this machine.

Contract: ``python -m bench.constant_server --port N [--host H] [--body-file F]`` serves
until SIGINT or SIGTERM. Every POST, on any path, is answered 200 with one fixed GetItem
response body (the file's bytes, else :data:`bench.workload.RESPONSE_BODY`), with
``Content-Type: application/x-amz-json-1.0``, an ``x-amzn-RequestId`` and a correct
``x-amz-crc32``. ``GET /healthz`` answers 200. It reads each request body, as any real
server must, and does nothing else: no parsing, no logging.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import zlib
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from bench.workload import RESPONSE_BODY

CONTENT_TYPE = "application/x-amz-json-1.0"
REQUEST_ID = "CONSTANT" + "0" * 44  # 52 characters, like DynamoDB's


def response_headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        "x-amzn-RequestId": REQUEST_ID,
        "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
    }


def create_app(body: bytes) -> web.Application:
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


async def serve(host: str, port: int, body: bytes) -> None:
    runner = web.AppRunner(create_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.constant_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, help="the response body (default: built in)")
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes() if args.body_file else RESPONSE_BODY
    asyncio.run(serve(args.host, args.port, body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
