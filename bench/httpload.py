"""The load generator of ``bench.run``: a lean HTTP/1.1 client on asyncio, in its own process.

Contract: ``python -m bench.httpload --url URL --workload SPEC_JSON --connections N
--duration S [--warmup W]`` keeps N requests in flight (closed loop: one per connection, the
next sent as soon as the last answer is read, as wrk does) for W + S seconds, every request
the next one of the workload's precomputed stream (:func:`bench.workloads.stream`). Each
answer is classified by its ``x-daxproxy-cache`` header (``hit``, ``miss``, ``bypass``), a
write (PutItem) as ``write`` whatever it says, and a read without the header (a server other
than daxproxy) as ``none``; a non-2xx answer, a dropped connection or no answer within
``--timeout`` is an error. Only answers that arrive inside the measured window (after the
warm-up) count. It prints ``BENCH_WINDOW start`` and ``BENCH_WINDOW end`` on stdout the
moment the window opens and closes (the harness samples the servers' CPU there), then one
``BENCH_RESULT {json}`` line: requests, seconds, requests/s, latency percentiles in
microseconds per class and for all, error counts, answers per class in time buckets of
``--bucket-ms`` (the hit ratio over time), and its own CPU time over the window as a fraction
of one core (near 1.0: the generator, not the server, was the bottleneck).

Beside wrk (:mod:`bench.loadgen`, the bench's default where installed): wrk is faster, so it
measures throughput, but its latency histogram is one for all answers; this generator times
hits, misses and writes apart (the cold start's curve and the mixes' per-outcome latency),
and is the whole bench where wrk is missing. :func:`latency_summary` is shared with the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.workloads import WRITE, Workload, stream

RESULT_MARKER = "BENCH_RESULT "
WINDOW_MARKER = "BENCH_WINDOW "
CLASSES = ("hit", "miss", "bypass", "write", "none")


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CACHE_LABEL = re.compile(rb"\r\nx-daxproxy-cache:[ \t]*([A-Za-z]+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)


def percentile(ordered: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of an ascending sequence; 0 when it is empty."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: list[int]) -> dict[str, float]:
    """Count, percentiles, mean and maximum of latencies in microseconds."""
    ordered = sorted(values)
    count = len(ordered)
    return {
        "count": count,
        "p50_us": percentile(ordered, 50),
        "p90_us": percentile(ordered, 90),
        "p99_us": percentile(ordered, 99),
        "p999_us": percentile(ordered, 99.9),
        "mean_us": round(sum(ordered) / count, 1) if count else 0.0,
        "max_us": ordered[-1] if ordered else 0,
    }


@dataclass(slots=True)
class Head:
    """What the generator reads from an answer's head."""

    status: int
    label: str | None
    close: bool
    length: int
    chunked: bool


def parse_head(head: bytes) -> Head:
    """The status line and the headers that matter, from the bytes before the blank line."""
    status = int(head[9:12])
    length = _CONTENT_LENGTH.search(head)
    label = _CACHE_LABEL.search(head)
    return Head(
        status,
        label.group(1).decode().lower() if label else None,
        _CLOSE.search(head) is not None,
        int(length.group(1)) if length else 0,
        length is None and _CHUNKED.search(head) is not None,
    )


def chunked_end(buffer: bytearray) -> int:
    """Where a complete chunked body ends in the buffer; -1 while it is incomplete."""
    position = 0
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return -1
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:  # no trailers from these servers: the final CRLF
            return position + 2 if len(buffer) >= position + 2 else -1
        position += size + 2
        if len(buffer) < position:
            return -1


@dataclass
class Tally:
    """What the measured window saw."""

    bucket_ns: int
    latencies_us: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CLASSES})
    buckets: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CLASSES})
    errors: dict[str, int] = field(
        default_factory=lambda: {"status": 0, "timeout": 0, "dropped": 0, "connect": 0}
    )

    def count(self, klass: str, latency_ns: int, since_start_ns: int) -> None:
        self.latencies_us[klass].append(latency_ns // 1000)
        bucket = since_start_ns // self.bucket_ns
        series = self.buckets[klass]
        if len(series) <= bucket:
            series.extend([0] * (bucket + 1 - len(series)))
        series[bucket] += 1


class Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight, driven by callbacks: the next
    request goes out from ``data_received`` as soon as the last answer is whole, with no
    task or future per request. Answers need a Content-Length or chunked encoding."""

    def __init__(self, generator: Generator, connect_started: int) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0  # perf_counter_ns of the request in flight; 0: none
        self.kind = 0
        self.timed_out = False
        self._connect_started = connect_started
        self._buffer = bytearray()
        self._head: Head | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.generator.opened(self, self._connect_started)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        head = self._head
        if head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._head = parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
        if head.chunked:
            body_end = chunked_end(buffer)
            if body_end < 0:
                return
        elif len(buffer) < head.length:
            return
        buffer.clear()  # one request in flight: nothing can follow the answer
        self._head = None
        self.generator.answered(self, head)

    def abort(self) -> None:
        self.timed_out = True
        if self.transport is not None:
            self.transport.abort()


@dataclass
class Window:
    """Answers count only between ``start`` and ``end`` (perf_counter_ns); 0: not open yet."""

    start: int = 0
    end: int = 0

    def open_at(self, now: int) -> bool:
        return self.start != 0 and self.start <= now and (self.end == 0 or now <= self.end)


class Generator:
    def __init__(
        self, url: str, workload: Workload, connections: int, timeout: float, bucket_ms: float
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.requests = stream(workload, f"{self.host}:{self.port}")
        self.connections = connections
        self.timeout_ns = int(timeout * 1e9)
        self.tally = Tally(int(bucket_ms * 1e6))
        self.window = Window()
        self.stopping = False
        self._next = 0
        self._open: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()

    def connect(self, delay: float = 0.0) -> None:
        """Open one more connection (its first request goes out once it is made)."""
        task = asyncio.ensure_future(self._connect(delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        started = time.perf_counter_ns()
        try:
            await loop.create_connection(lambda: Connection(self, started), self.host, self.port)
        except OSError:
            if self.window.open_at(time.perf_counter_ns()):
                self.tally.errors["connect"] += 1
            if not self.stopping:
                self.connect(0.01)  # refused: do not spin

    def opened(self, connection: Connection, started: int) -> None:
        self._open.add(connection)
        self.send_next(connection, started)

    def send_next(self, connection: Connection, started: int = 0) -> None:
        if self.stopping:
            assert connection.transport is not None
            connection.transport.close()
            return
        kind, payload = self.requests[self._next % len(self.requests)]
        self._next += 1
        connection.kind = kind
        connection.sent_at = started or time.perf_counter_ns()
        assert connection.transport is not None
        connection.transport.write(payload)

    def answered(self, connection: Connection, head: Head) -> None:
        now = time.perf_counter_ns()
        window = self.window
        if window.open_at(now):
            tally = self.tally
            if not 200 <= head.status < 300:
                tally.errors["status"] += 1
            else:
                label = head.label
                if connection.kind == WRITE:
                    klass = "write"
                elif label in CLASSES:
                    klass = label
                else:
                    klass = "none"
                tally.count(klass, now - connection.sent_at, now - window.start)
        connection.sent_at = 0
        if head.close:  # the server closes it: connection_lost opens the next one
            assert connection.transport is not None
            connection.transport.close()
        else:
            self.send_next(connection)

    def lost(self, connection: Connection) -> None:
        self._open.discard(connection)
        if connection.sent_at:  # a request was in flight
            if self.window.open_at(time.perf_counter_ns()):
                self.tally.errors["timeout" if connection.timed_out else "dropped"] += 1
            connection.sent_at = 0
        if not self.stopping:
            self.connect()
        elif not self._open:
            self._idle.set()

    async def watchdog(self) -> None:
        """Abort a connection whose answer is overdue: it counts as a timeout."""
        while not self.stopping:
            await asyncio.sleep(0.1)
            now = time.perf_counter_ns()
            for connection in list(self._open):
                if connection.sent_at and now - connection.sent_at > self.timeout_ns:
                    connection.abort()

    async def run(self, warmup: float, duration: float) -> dict[str, object]:
        guard = asyncio.ensure_future(self.watchdog())
        try:
            for _ in range(self.connections):
                self.connect()
            if warmup > 0:
                await asyncio.sleep(warmup)
            self.window.start = time.perf_counter_ns()
            cpu_start = time.process_time()
            _mark("start")
            await asyncio.sleep(duration)
            self.window.end = time.perf_counter_ns()
            cpu = time.process_time() - cpu_start
            _mark("end")
            self.stopping = True
            # Let the answers in flight arrive (uncounted), so servers see no reset.
            if self._open:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), self.timeout_ns / 1e9)
        finally:
            self.stopping = True
            guard.cancel()
            for task in list(self._tasks):
                task.cancel()
            for connection in list(self._open):
                if connection.transport is not None:
                    connection.transport.abort()
            await asyncio.gather(guard, *self._tasks, return_exceptions=True)
        seconds = (self.window.end - self.window.start) / 1e9
        return summarize(self.tally, seconds, cpu)


def _mark(what: str) -> None:
    sys.stdout.write(f"{WINDOW_MARKER}{what}\n")
    sys.stdout.flush()


def summarize(tally: Tally, seconds: float, cpu_seconds: float) -> dict[str, object]:
    everything = [v for c in CLASSES for v in tally.latencies_us[c]]
    count = len(everything)
    # Whole buckets only: the last one would hold the window's final instant alone.
    length = max(1, round(seconds * 1e9 / tally.bucket_ns))
    return {
        "requests": count,
        "seconds": round(seconds, 6),
        "rps": round(count / seconds, 2) if seconds > 0 else 0.0,
        "latency": {
            "all": latency_summary(everything),
            **{c: latency_summary(v) for c, v in tally.latencies_us.items() if v},
        },
        "errors": dict(tally.errors),
        "timeline": {
            "bucket_s": tally.bucket_ns / 1e9,
            "counts": {
                c: (s + [0] * (length - len(s)))[:length] for c, s in tally.buckets.items() if s
            },
        },
        "loadgen_cpu_s": round(cpu_seconds, 4),
        "loadgen_cpu_fraction": round(cpu_seconds / seconds, 4) if seconds > 0 else 0.0,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.httpload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--url", required=True, help="the target, e.g. http://127.0.0.1:8111")
    add("--workload", required=True, help="the workload as JSON (Workload.to_json)")
    add("--connections", type=int, default=32)
    add("--duration", type=float, default=5.0, help="seconds measured")
    add("--warmup", type=float, default=0.0, help="seconds of load before the window opens")
    add("--timeout", type=float, default=5.0, help="seconds before a request is a timeout")
    add("--bucket-ms", type=float, default=100.0, help="width of a timeline bucket")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workload = Workload.from_json(json.loads(args.workload))
    generator = Generator(args.url, workload, args.connections, args.timeout, args.bucket_ms)
    result = asyncio.run(generator.run(args.warmup, args.duration))
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
