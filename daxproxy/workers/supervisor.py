"""The supervisor of several worker processes: ``workers`` above 1.

:func:`supervise` runs in the process the user started, and serves no request itself:

1. it checks the TLS files (:mod:`daxproxy.edge.tls`) and takes the port
   (:mod:`daxproxy.workers.listeners`), so that a bad file or a taken port stops start-up
   with the same message and exit code as a single process;
2. it makes a private directory (mode 0700) for its Unix sockets, starts the embedded moto
   when no upstream is set (every worker uses it), the change hub
   (:mod:`daxproxy.workers.channel`) and the totals socket (:mod:`daxproxy.workers.
   figures`);
3. it starts worker 1, and once it serves the others (:mod:`daxproxy.workers.worker`,
   each a ``python`` process reading its :class:`WorkerSpec`). A worker that exits before
   it serves stops the whole start-up: its own log line says why, and the supervisor exits
   with its exit code (2 for a setting the workers cannot run with);
4. a worker that dies is started again at once under its number, logged (WARNING, with
   its exit code or signal) and counted (``daxproxy_worker_restarts_total``); one that dies
   again before serving is retried after a pause growing to :data:`MAX_PAUSE`;
5. on SIGTERM or SIGINT it sends SIGTERM to every worker, each of which stops listening
   and lets its requests in flight finish for up to ``shutdown_timeout_millis``; a worker
   still running :data:`KILL_AFTER` s past that is killed. Then it stops what it started
   and exits 0. A signal during start-up stops what had started.

It sums the workers' figures for ``/metrics`` (:class:`~daxproxy.workers.totals.
MetricTotals`, with ``daxproxy_workers`` and ``daxproxy_worker_restarts_total``) and
``/admin/caches``, asking every serving worker when a worker asks, and reads their
metrics every :data:`SNAPSHOT_EVERY` s so that a dead worker's counts are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from daxproxy import __version__
from daxproxy.core.access import Grant
from daxproxy.core.config import Settings
from daxproxy.edge.loops import loop_factory
from daxproxy.edge.server import Stop, mode_note, stop_signals
from daxproxy.edge.tls import server_context
from daxproxy.service.runtime import start_embedded
from daxproxy.workers.channel import ChangeHub
from daxproxy.workers.figures import (
    CACHES,
    METRICS,
    FigureServer,
    ask,
    totals_socket,
    worker_socket,
)
from daxproxy.workers.listeners import reserve
from daxproxy.workers.spec import CHANGES_SOCKET, READY, WorkerSpec
from daxproxy.workers.totals import MetricTotals, cache_totals

log = logging.getLogger("daxproxy")

SNAPSHOT_EVERY = 5.0  # seconds between reads of every worker's metrics
ASK_TIMEOUT = 2.0  # how long a worker has to give its figures
KILL_AFTER = 5.0  # past shutdown_timeout_millis, a worker still running is killed
MAX_PAUSE = 30.0  # the longest pause between two starts of a worker that keeps failing


class WorkerFailed(Exception):
    """A worker exited before it served."""

    def __init__(self, number: int, code: int) -> None:
        super().__init__(f"worker {number} exited with {_exit(code)} before serving")
        self.number = number
        self.code = code


async def supervise(settings: Settings, grants: Mapping[str, Grant] | None, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT; the exit code."""
    async with stop_signals() as stop:
        return await _supervise(settings, grants, workers, stop)


async def _supervise(
    settings: Settings, grants: Mapping[str, Grant] | None, count: int, stop: Stop
) -> int:
    server_context(settings)  # a bad certificate or key stops here, before anything runs
    reservation = reserve(settings.host, settings.port)  # a taken port stops here
    settings = replace(settings, port=reservation.port)
    began = 0.0
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(reservation.close)
        run_dir = tempfile.mkdtemp(prefix="daxproxy-")  # mode 0700
        stack.callback(shutil.rmtree, run_dir, True)
        pool = WorkerPool(settings, grants, count, run_dir)
        starting = asyncio.create_task(_start(stack, pool))
        signalled = asyncio.create_task(stop.event.wait())
        try:
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signalled.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("daxproxy stopping on %s while starting", stop.name)
            return 0
        try:
            starting.result()
        except WorkerFailed as failed:
            log.error("daxproxy cannot start: %s", failed)
            return failed.code if failed.code > 0 else 1
        scheme = "http" if settings.tls_cert_file is None else "https"
        log.info(
            "daxproxy %s listening on %s://%s:%d with %d workers (event loop: %s)",
            __version__,
            scheme,
            settings.host,
            settings.port,
            count,
            loop_factory(settings.event_loop)[1],
        )
        note = mode_note(settings)
        if note is not None:
            log.info("%s", note)
        await stop.event.wait()
        log.info(
            "daxproxy stopping on %s; telling %d workers to finish their requests in flight "
            "within %g s",
            stop.name,
            pool.serving(),
            settings.shutdown_timeout_millis / 1000,
        )
        began = time.monotonic()
        await pool.stop(settings.shutdown_timeout_millis / 1000 + KILL_AFTER)
    log.info("daxproxy stopped in %.2f s", time.monotonic() - began)
    return 0


async def _start(stack: contextlib.AsyncExitStack, pool: WorkerPool) -> None:
    """Everything the workers share, then the workers; each stopped by ``stack``."""
    if pool.settings.upstream is None:
        pool.embedded = await start_embedded(stack)
    hub = ChangeHub(os.path.join(pool.run_dir, CHANGES_SOCKET))
    await hub.start()
    stack.push_async_callback(hub.close)
    totals = FigureServer(totals_socket(pool.run_dir), pool.totals_answer)
    await totals.start()
    stack.push_async_callback(totals.close)
    stack.push_async_callback(pool.stop, KILL_AFTER)  # on a failed or cancelled start
    await pool.start()


@dataclass
class _Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    serving: bool = False
    failures: int = 0  # starts in a row that ended before it served
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class WorkerPool:
    """The worker processes, by number, and what the supervisor knows of them."""

    # How a worker process is started (tests start stand-ins).
    command: tuple[str, ...] = (sys.executable, "-m", "daxproxy.workers.worker")

    def __init__(
        self,
        settings: Settings,
        grants: Mapping[str, Grant] | None,
        count: int,
        run_dir: str,
    ) -> None:
        self.settings = settings
        self.grants = grants
        self.run_dir = run_dir
        self.embedded: str | None = None
        self.restarts = 0
        self.totals = MetricTotals()
        self.stopping = False
        self._workers = {n: _Worker(n) for n in range(1, count + 1)}
        self._snapshots: asyncio.Task[None] | None = None
        # One read of the metrics at a time, so that an older answer never replaces a newer.
        self._reading = asyncio.Lock()

    def serving(self) -> int:
        return sum(1 for w in self._workers.values() if w.serving)

    async def start(self) -> None:
        """Worker 1, then the others at once; WorkerFailed if one exits first."""
        first, *others = self._workers.values()
        await self._launch(first)
        started = await asyncio.gather(*(self._launch(w) for w in others), return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        self._snapshots = asyncio.create_task(self._read_metrics_often())

    async def _launch(self, worker: _Worker) -> None:
        """Start ``worker``'s process and wait until it serves, then watch it."""
        spec = WorkerSpec(
            number=worker.number,
            settings=self.settings,
            grants=self.grants,
            run_dir=self.run_dir,
            embedded=self.embedded,
            supervisor=os.getpid(),
        )
        process = worker.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
        )
        assert process.stdin is not None and process.stdout is not None
        with contextlib.suppress(OSError):  # it died at once: found below
            process.stdin.write(pickle.dumps(spec))
            await process.stdin.drain()
        process.stdin.close()
        if await process.stdout.readline() != READY:
            raise WorkerFailed(worker.number, await process.wait())
        worker.serving = True
        worker.failures = 0
        self._spawn(worker, self._watch(worker, process))

    def _spawn(self, worker: _Worker, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        worker.tasks.add(task)
        task.add_done_callback(worker.tasks.discard)

    async def _watch(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        worker.serving = False
        if self.stopping:
            return
        self.totals.retire(worker.number)
        self.restarts += 1
        log.warning(
            "worker %d (pid %d) exited with %s; starting it again",
            worker.number,
            process.pid,
            _exit(code),
        )
        await self._restart(worker)

    async def _restart(self, worker: _Worker) -> None:
        began = time.monotonic()
        while not self.stopping:
            try:
                await self._launch(worker)
            except WorkerFailed as failed:
                worker.failures += 1
                pause = min(MAX_PAUSE, 0.5 * 2 ** (worker.failures - 1))
                log.error("%s; trying again in %g s", failed, pause)
                await asyncio.sleep(pause)
                continue
            assert worker.process is not None
            log.info(
                "worker %d (pid %d) serving again after %.2f s",
                worker.number,
                worker.process.pid,
                time.monotonic() - began,
            )
            return

    async def stop(self, timeout: float) -> None:
        """SIGTERM to every worker; those still running after ``timeout`` s are killed."""
        self.stopping = True
        if self._snapshots is not None:
            self._snapshots.cancel()
        for worker in self._workers.values():
            for task in list(worker.tasks):
                task.cancel()
        processes = [
            w.process
            for w in self._workers.values()
            if w.process is not None and w.process.returncode is None
        ]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in processes]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout)
            for process in processes:
                if process.returncode is None:
                    log.warning("worker (pid %d) still running; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if late:
                await asyncio.wait(late)
        for worker in self._workers.values():
            worker.serving = False

    # Figures ------------------------------------------------------------------------

    async def _gather(self, what: str) -> dict[int, bytes]:
        """Each serving worker's answer to ``what``, from the process that still serves
        under its number; a worker that gives none is left out."""
        asked = {n: w.process for n, w in self._workers.items() if w.serving}
        answers = await asyncio.gather(
            *(ask(worker_socket(self.run_dir, n), what, ASK_TIMEOUT) for n in asked),
            return_exceptions=True,
        )
        found: dict[int, bytes] = {}
        for (number, process), answer in zip(asked.items(), answers, strict=True):
            worker = self._workers[number]
            if isinstance(answer, bytes):
                if worker.serving and worker.process is process:  # not replaced meanwhile
                    found[number] = answer
            elif isinstance(answer, Exception):
                log.debug("worker %d gave no %s: %r", number, what, answer)
            else:  # a BaseException: cancelled
                raise answer
        return found

    async def _read_metrics(self) -> None:
        async with self._reading:
            for number, answer in (await self._gather(METRICS)).items():
                self.totals.update(number, orjson.loads(answer))

    async def _read_metrics_often(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY)
            await self._read_metrics()

    async def totals_answer(self, what: str) -> bytes | None:
        """The totals socket's answers: ``metrics`` (text) and ``caches`` (JSON)."""
        if what == METRICS:
            await self._read_metrics()
            return self.totals.exposition(self.own_metrics())
        if what == CACHES:
            found = await self._gather(CACHES)
            if not found:
                return None
            return orjson.dumps(cache_totals({n: orjson.loads(a) for n, a in found.items()}))
        return None

    def own_metrics(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        """The supervisor's series: ``daxproxy_workers`` and the restarts."""
        workers = GaugeMetricFamily(
            "daxproxy_workers", "Worker processes serving (the workers setting, when all serve)"
        )
        workers.add_metric([], self.serving())
        restarts = CounterMetricFamily(
            "daxproxy_worker_restarts", "Worker processes started again after one died"
        )
        restarts.add_metric([], self.restarts)
        return [workers, restarts]


def _exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"
