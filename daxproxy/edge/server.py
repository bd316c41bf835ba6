"""Serving until told to stop: the listening socket, signals, graceful shutdown.

The same serves a worker process of several (``workers``; :mod:`daxproxy.workers`), given
its :class:`WorkerSpec`: the worker listens with ``SO_REUSEPORT`` on the port its
supervisor holds, uses the supervisor's embedded backend, labels its answers and request
log lines with its number, answers its figures socket, says it is ready once it listens,
and leaves the mode note to the supervisor.

:func:`serve` checks the TLS settings (:mod:`daxproxy.edge.tls`), opens the proxy (and its
backend), listens (HTTPS with TLS settings) with one :class:`~daxproxy.edge.protocol.
HttpProtocol` per client connection, bounded by :class:`EdgeServer` (the connection cap:
past ``max_client_connections`` open connections a new one is aborted as soon as it is
accepted, after the TLS handshake with TLS, before a byte is read, and counted in
``daxproxy_client_connections_refused_total``). The same port serves DAX's protocol: a
connection whose first byte is DAX's preamble's becomes a :class:`~daxproxy.edge.
dax_protocol.DaxProtocol` (:meth:`HttpProtocol.data_received` hands it over), counted in
the cap and the connection gauge in the HTTP connection's place and closed idle and
drained as HTTP ones are; its calls are answered by a :class:`~daxproxy.service.dax_calls.
DaxService` whose attribute-list ids are kept in the ``data_dir`` (opened before
listening; :func:`~daxproxy.service.attribute_store.open_store`), each connection with
its own authorization when ``auth_file`` is set (:meth:`DaxService.connection`). On
SIGINT or SIGTERM:

1. stops listening: new connections are refused;
2. closes idle keep-alive connections at once, and lets each request in flight finish and
   be answered (with ``Connection: close``), for up to the ``shutdown_timeout_millis``
   setting (0: not at all);
3. past that deadline cuts the requests still running (their connections close without an
   answer; a warning says how many), so a stuck upstream cannot hold the process;
4. closes the upstream client and stops the embedded backend, and returns.

A signal during start-up cancels the start-up and cleans up what had started. Lines
logged: listening (INFO), in ``--mode dax`` with the query cache on what that means for a
Query after a write (INFO), the signal and what is in flight (INFO), requests cut
(WARNING), stopped with the time taken (INFO). :func:`listening` serves a given proxy on a
loopback port for tests, without signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Mapping

from daxproxy import __version__
from daxproxy.core.access import Grant
from daxproxy.core.config import Settings
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.edge import answers
from daxproxy.edge.dax_protocol import DaxProtocol, Services, advertised
from daxproxy.edge.limits import limits_of
from daxproxy.edge.logs import request_log
from daxproxy.edge.memory import freeze_startup
from daxproxy.edge.outbox import Outbox
from daxproxy.edge.protocol import HttpProtocol
from daxproxy.edge.routes import Router
from daxproxy.edge.tls import server_context
from daxproxy.service.attribute_store import open_store
from daxproxy.service.dax_calls import DaxService
from daxproxy.service.proxy import Proxy
from daxproxy.service.runtime import open_proxy
from daxproxy.workers.figures import FigureServer, totals_socket, worker_answers, worker_socket
from daxproxy.workers.spec import WorkerSpec, announce_ready

log = logging.getLogger("daxproxy")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_BACKLOG = 1024


class EdgeServer:
    """The client connections of one listening proxy: what they share, and their count."""

    def __init__(
        self,
        proxy: Proxy,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        totals: str | None = None,
        dax: Services | None = None,
    ) -> None:
        """``dax``: what answers DAX connections; None: the port serves HTTP alone."""
        self.loop = loop
        self.outbox = Outbox(loop)
        self.limits = limits_of(settings)
        self.router = Router(proxy, settings, self.count, totals)
        self.proxy = proxy
        self.dax = dax
        self.dax_endpoint = advertised(settings.dax_endpoint)
        self.stopping = False
        self.connections: set[HttpProtocol | DaxProtocol] = set()
        self._drained: asyncio.Future[None] | None = None

    def count(self) -> int:
        return len(self.connections)

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    def register(self, connection: HttpProtocol) -> bool:
        cap = self.limits.max_connections
        if self.stopping or (cap and len(self.connections) >= cap):
            log.debug("client connection refused: max_client_connections reached")
            if self.proxy.metrics is not None and not self.stopping:
                self.proxy.metrics.client_connection_refused()
            return False
        self.connections.add(connection)
        return True

    def dax_in_place_of(self, connection: HttpProtocol) -> DaxProtocol | None:
        """A DAX connection, counted in ``connection``'s place; None: DAX is not served."""
        if self.dax is None:
            return None
        limits = self.limits
        dax = DaxProtocol(
            self.dax.connection(),
            limits.max_body_bytes,
            idle_timeout=limits.idle_timeout,
            forget=self.forget,
            advertised=self.dax_endpoint,
            outbox=self.outbox,
        )
        self.connections.discard(connection)
        self.connections.add(dax)
        return dax

    def forget(self, connection: HttpProtocol | DaxProtocol) -> None:
        self.connections.discard(connection)
        drained = self._drained
        if drained is not None and not self.connections and not drained.done():
            drained.set_result(None)

    async def drain(self, timeout: float) -> int:
        """Close idle connections, wait up to ``timeout`` s for the busy ones to answer
        and close; cut those still open then. How many requests were cut."""
        self.stopping = True
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            self._drained = self.loop.create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._drained
        cut = self.proxy.in_flight if self.connections else 0
        for connection in list(self.connections):
            connection.cut()
        await asyncio.sleep(0)  # let the cancelled requests unwind
        return cut


async def serve(
    settings: Settings,
    grants: Mapping[str, Grant] | None = None,
    worker: WorkerSpec | None = None,
) -> None:
    """``grants``: the ``auth_file``'s, loaded by the command line (:mod:`daxproxy.edge.auth`);
    ``worker``: this process is that worker of several. Once listening, the objects made to
    start are set aside from the collector (:func:`~daxproxy.edge.memory.freeze_startup`):
    this is the whole process's serving, never a part of another program's."""
    async with stop_signals() as stop:
        await _serve(settings, grants, stop, worker)


@contextlib.asynccontextmanager
async def stop_signals() -> AsyncIterator[Stop]:
    """SIGINT and SIGTERM, caught and remembered for as long as the block runs."""
    loop = asyncio.get_running_loop()
    stop = Stop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.received, sig)
    try:
        yield stop
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


class Stop:
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

    @property
    def name(self) -> str:
        return self.signal.name if self.signal is not None else "request"


async def _serve(
    settings: Settings,
    grants: Mapping[str, Grant] | None,
    stop: Stop,
    worker: WorkerSpec | None,
) -> None:
    tls = server_context(settings)  # a bad certificate or key stops here, before anything runs
    name = "daxproxy" if worker is None else f"daxproxy {worker.name}"
    log.debug("%s %s starting", name, __version__)
    async with contextlib.AsyncExitStack() as stack:
        proxy = await _start(stack, settings, grants, stop, worker)
        if proxy is None:
            log.info("%s stopping on %s while starting", name, stop.name)
            return
        requests = request_log(settings, None if worker is None else worker.number)
        if requests is not None:
            proxy.add_observer(requests)
        totals = None if worker is None else totals_socket(worker.run_dir)
        dax = _dax_service(stack, proxy, settings)
        edge = EdgeServer(proxy, settings, asyncio.get_running_loop(), totals, dax)
        if worker is not None:
            answers.label_worker(worker.number)
        began = 0.0
        try:
            server = await _listen(edge, settings, tls, reuse_port=worker is not None)
            scheme = "http" if tls is None else "https"
            addresses = ", ".join(
                f"{scheme}://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets
            )
            log.info(
                "daxproxy %s%s listening on %s (event loop: %s)",
                __version__,
                "" if worker is None else f" {worker.name} (pid {os.getpid()})",
                addresses,
                loop_name(edge.loop),
            )
            log.debug("%s", freeze_startup())
            if worker is None:
                note = mode_note(settings)
                if note is not None:
                    log.info("%s", note)
            else:
                figures = FigureServer(
                    worker_socket(worker.run_dir, worker.number), worker_answers(proxy, edge.count)
                )
                await figures.start()
                stack.push_async_callback(figures.close)
                announce_ready()
            await stop.event.wait()
            log.info(
                "%s stopping on %s; requests in flight: %d, given up to %g s to finish",
                name,
                stop.name,
                proxy.in_flight,
                settings.shutdown_timeout_millis / 1000,
            )
            began = time.monotonic()
            server.close()
            await _stop(edge, settings)
        finally:
            began = began or time.monotonic()
    log.info("%s stopped in %.2f s", name, time.monotonic() - began)


async def _start(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    grants: Mapping[str, Grant] | None,
    stop: Stop,
    worker: WorkerSpec | None,
) -> Proxy | None:
    """The proxy, opened on ``stack``; None when a signal came first (the opening is
    cancelled, and what it had started stopped)."""
    opened = (
        open_proxy(settings, grants=grants)
        if worker is None
        else open_proxy(
            settings,
            grants=grants,
            changes=worker.changes,
            worker=worker.number,
            embedded=worker.embedded,
        )
    )
    opening = asyncio.create_task(stack.enter_async_context(opened))
    signalled = asyncio.create_task(stop.event.wait())
    try:
        await asyncio.wait({opening, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
    if not opening.done():
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        return None
    proxy = opening.result()  # a failed start-up raises here
    return None if stop.event.is_set() else proxy


def _dax_service(
    stack: contextlib.AsyncExitStack, proxy: Proxy, settings: Settings
) -> DaxService | None:
    """What answers DAX connections: the proxy's calls, with the attribute-list ids in the
    ``data_dir`` (closed with ``stack``)."""
    if proxy.tables is None:
        return None
    store = open_store(settings)
    stack.callback(store.close)
    return DaxService(proxy, proxy.tables, AttributeLists(store=store))


async def _listen(
    edge: EdgeServer, settings: Settings, tls: ssl.SSLContext | None, *, reuse_port: bool
) -> asyncio.Server:
    return await edge.loop.create_server(
        edge.protocol,
        settings.host,
        settings.port,
        ssl=tls,
        reuse_address=True,
        reuse_port=reuse_port or None,
        backlog=_BACKLOG,
    )


async def _stop(edge: EdgeServer, settings: Settings) -> None:
    timeout = settings.shutdown_timeout_millis / 1000
    cut = await edge.drain(timeout)
    if cut:
        log.warning(
            "shutdown deadline of %g s reached; requests still in flight: %d, cutting them",
            timeout,
            cut,
        )


@contextlib.asynccontextmanager
async def listening(
    proxy: Proxy, settings: Settings, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[EdgeServer, int]]:
    """``proxy`` served on ``host`` at a free port, until the block ends (for tests)."""
    edge = EdgeServer(proxy, settings, asyncio.get_running_loop())
    server = await edge.loop.create_server(edge.protocol, host, 0)
    try:
        yield edge, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await edge.drain(1.0)
        await server.wait_closed()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


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
