"""Each worker's figures, asked for over private Unix sockets.

A worker serves its figures on ``<run dir>/worker-<n>.sock`` (:class:`FigureServer`): a
client sends one line naming what it wants (``metrics`` or ``caches``) and reads the JSON
answer until the server closes the connection. The supervisor serves the sums the same way
on ``<run dir>/totals.sock`` (``metrics``: the exposition text; ``caches``: JSON), and a
worker asks it there when a client asks for ``/metrics`` or ``/admin/caches``
(:func:`ask`). The run directory is the supervisor's private one (mode 0700): only the
proxy's own user can connect. A figure is read on the event loop between requests, so it
costs a cache hit nothing.

A worker's metrics are its registry's families as collected (:func:`metric_families`):
``[name, type, help, [[sample name, labels, value], ...]]`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from daxproxy.service.proxy import Proxy

log = logging.getLogger(__name__)

METRICS, CACHES = "metrics", "caches"
TOTALS_SOCKET = "totals.sock"
Family = list[Any]  # [name, type, help, samples]


def worker_socket(run_dir: str, worker: int) -> str:
    return os.path.join(run_dir, f"worker-{worker}.sock")


def totals_socket(run_dir: str) -> str:
    return os.path.join(run_dir, TOTALS_SOCKET)


def metric_families(registry: CollectorRegistry) -> list[Family]:
    return [
        [f.name, f.type, f.documentation, [[s.name, s.labels, s.value] for s in f.samples]]
        for f in registry.collect()
    ]


Answerer = Callable[[str], Awaitable[bytes | None]]


def worker_answers(proxy: Proxy, connections: Callable[[], int]) -> Answerer:
    """A worker's answers: its metrics' families, and its admin view's figures."""

    async def answer(what: str) -> bytes | None:
        if what == METRICS and proxy.metrics is not None:
            proxy.metrics.set_client_connections(connections())
            return orjson.dumps(metric_families(proxy.metrics.registry))
        if what == CACHES and proxy.admin is not None:
            return orjson.dumps(proxy.admin.stats())
        return None

    return answer


class FigureServer:
    """Answers ``ask(path, what)`` with ``await answer(what)`` (None: nothing to say)."""

    def __init__(self, path: str, answer: Answerer) -> None:
        self.path = path
        self._answer = answer
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # A socket file left by a dead worker of the same number is replaced.
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            what = (await reader.readline()).decode("ascii", "replace").strip()
            answer = await self._answer(what)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("fault while answering a figures request on %s", self.path)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def ask(path: str, what: str, timeout: float) -> bytes:
    """The answer at ``path`` to ``what``; OSError or TimeoutError when none came in time."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(what.encode("ascii") + b"\n")
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if not answer:
        raise OSError(f"no answer to {what!r} on {path}")
    return answer
