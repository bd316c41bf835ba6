"""Serving until told to stop: the listening socket, signals, graceful shutdown.

:func:`serve` opens the app (and with it the proxy and its backend), listens, and on
SIGINT or SIGTERM stops accepting, gives requests in flight up to the
``shutdown_timeout_millis`` setting to finish, then closes the upstream and stops the
embedded backend. One log line at start and at stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from daxproxy import __version__
from daxproxy.core.config import Settings
from daxproxy.edge.app import SERVER_OPTIONS, create_app

log = logging.getLogger("daxproxy")


async def serve(settings: Settings) -> None:
    runner = web.AppRunner(
        create_app(settings),
        **SERVER_OPTIONS,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_millis / 1000,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        await site.start()
        addresses = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses)
        log.info("daxproxy %s listening on %s", __version__, addresses)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("daxproxy stopping")
    finally:
        await runner.cleanup()
    log.info("daxproxy stopped")
