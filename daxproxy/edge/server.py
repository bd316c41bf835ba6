"""Serving until told to stop: the listening socket, signals, graceful shutdown.

:func:`serve` checks the TLS settings (:mod:`daxproxy.edge.tls`), opens the app (and with it
the proxy and its backend), listens (HTTPS with TLS settings) through
:class:`~daxproxy.edge.limits.EdgeRunner`, which bounds client connections, headers and read
and idle times, and on SIGINT or SIGTERM:

1. stops listening: new connections are refused;
2. closes idle keep-alive connections at once, and lets each request in flight finish and
   be answered, for up to the ``shutdown_timeout_millis`` setting (0: not at all);
3. past that deadline cuts the requests still running (their connections close without an
   answer; a warning says how many), so a stuck upstream cannot hold the process;
4. closes the upstream client and stops the embedded backend, and returns.

aiohttp's ``AppRunner.cleanup`` does 1 to 4 (read for aiohttp 3.14: it awaits each
connection's handler up to the timeout, then cancels it and waits up to the timeout again;
a timeout of 0 would mean "forever", hence the floor below). A signal during start-up
cancels the start-up and cleans up what had started. Lines logged: listening (INFO), in
``--mode dax`` with the query cache on what that means for a Query after a write (INFO), the
signal and what is in flight (INFO), requests cut (WARNING), stopped with the time taken
(INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import signal
import time
from collections.abc import Mapping

from aiohttp import web

from daxproxy import __version__
from daxproxy.core.access import Grant
from daxproxy.core.config import Settings
from daxproxy.edge.app import PROXY, SERVER_OPTIONS, create_app
from daxproxy.edge.limits import EdgeLimits, EdgeRunner
from daxproxy.edge.tls import server_context
from daxproxy.service.runtime import open_proxy

log = logging.getLogger("daxproxy")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# aiohttp reads a shutdown timeout of 0 as "no timeout"; the setting's 0 means "do not wait".
_SHORTEST_WAIT = 0.001
_CEILED_AFTER = 5.0


class _Stop:
    """The first SIGINT or SIGTERM, remembered; later ones are only noted."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal: signal.Signals | None = None

    def received(self, sig: signal.Signals) -> None:
        if self.signal is not None:
            log.info("%s received while stopping; stopping still", sig.name)
            return
        self.signal = sig
        self.event.set()


async def serve(settings: Settings, grants: Mapping[str, Grant] | None = None) -> None:
    """``grants``: the ``auth_file``'s, loaded by the command line (:mod:`daxproxy.edge.auth`)."""
    loop = asyncio.get_running_loop()
    stop = _Stop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.received, sig)
    try:
        await _serve(settings, grants, stop)
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


async def _serve(settings: Settings, grants: Mapping[str, Grant] | None, stop: _Stop) -> None:
    timeout = max(settings.shutdown_timeout_millis / 1000, _SHORTEST_WAIT)
    tls = server_context(settings)  # a bad certificate or key stops here, before anything runs
    app = create_app(settings, functools.partial(open_proxy, grants=grants))

    def refused() -> None:
        proxy = app.get(PROXY)
        if proxy is not None and proxy.metrics is not None:
            proxy.metrics.client_connection_refused()

    runner = EdgeRunner(
        app,
        EdgeLimits.of(settings),
        on_refused=refused,
        **SERVER_OPTIONS,
        handle_signals=False,
        shutdown_timeout=timeout,
    )
    log.debug("daxproxy %s starting", __version__)
    try:
        if not await _start(runner, stop):
            log.info("daxproxy stopping on %s while starting", _name(stop))
            return
        site = web.TCPSite(
            runner, settings.host, settings.port, ssl_context=tls, reuse_address=True
        )
        await site.start()
        scheme = "http" if tls is None else "https"
        addresses = ", ".join(f"{scheme}://{a[0]}:{a[1]}" for a in runner.addresses)
        log.info("daxproxy %s listening on %s", __version__, addresses)
        note = mode_note(settings)
        if note is not None:
            log.info("%s", note)
        await stop.event.wait()
        log.info(
            "daxproxy stopping on %s; requests in flight: %d, given up to %g s to finish",
            _name(stop),
            app[PROXY].in_flight,
            settings.shutdown_timeout_millis / 1000,
        )
    finally:
        began = time.monotonic()
        watch = asyncio.create_task(_warn_at_deadline(app, timeout, settings))
        try:
            await runner.cleanup()
        finally:
            watch.cancel()
    log.info("daxproxy stopped in %.2f s", time.monotonic() - began)


def mode_note(settings: Settings) -> str | None:
    """The line that warns of DAX's query-cache semantics, the top surprise for ORM users
    (a save, then a Query or count that returns the old page): in ``--mode dax`` with the
    query cache on; else None."""
    query_cache_on = settings.query_ttl_millis > 0 and settings.query_cache_max_bytes > 0
    if settings.mode != "dax" or not query_cache_on:
        return None
    return (
        "--mode dax: as in DAX, writes do not update cached Query and Scan pages, so a "
        "Query or Scan right after a write, even through this proxy, may return the old "
        f"page for up to {settings.query_ttl_millis / 1000:g} s (query_ttl_millis); "
        "--mode strict drops a table's cached pages on each write it sees"
    )


async def _start(runner: web.AppRunner, stop: _Stop) -> bool:
    """Set the runner up; False when a signal came first (the set-up is cancelled)."""
    setup = asyncio.create_task(runner.setup())
    signalled = asyncio.create_task(stop.event.wait())
    try:
        await asyncio.wait({setup, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if not setup.done():
        setup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await setup
        return False
    setup.result()  # a failed start-up raises here
    return not stop.event.is_set()


async def _warn_at_deadline(app: web.Application, timeout: float, settings: Settings) -> None:
    """Just before aiohttp cuts what is still running, say how much that is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if timeout > _CEILED_AFTER:  # as aiohttp.helpers.ceil_timeout rounds its deadline
        deadline = math.ceil(deadline)
    await asyncio.sleep(max(deadline - loop.time() - _SHORTEST_WAIT, 0))
    proxy = app.get(PROXY)
    if proxy is not None and proxy.in_flight:
        log.warning(
            "shutdown deadline of %g s reached; requests still in flight: %d, cutting them",
            settings.shutdown_timeout_millis / 1000,
            proxy.in_flight,
        )


def _name(stop: _Stop) -> str:
    return stop.signal.name if stop.signal is not None else "request"
