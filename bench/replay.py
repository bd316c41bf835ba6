"""One lean load generator for GetItem hits over HTTP or DAX: ``python -m bench.replay``.

Contract: ``python -m bench.replay --url URL --protocol http|dax --workload SPEC_JSON
--connections N --duration S [--warmup W]`` sends a GetItem workload's keys (read-zipf's:
the seeded Zipf order of :func:`bench.workloads.stream`, so the same keys in the same order
as wrk and :mod:`bench.httpload`) as precomputed bytes:

- ``http``: the very GetItem POST the bench's other generators send
  (:func:`bench.workloads.request_bytes`, with their dummy signature);
- ``dax``: per connection the preamble and an authorizeConnection once (a dummy signature of
  the real client's shape: the proxy checks none without ``auth_file``), then a getItem frame
  per request, ``1, 263244906, table, key, {3: 0}`` in CBOR (the map of indefinite length),
  byte for byte what the ``amazon-dax-client`` sends (the unit tests compare them).

First it warms: one blocking connection reads every key of the stream twice and records
the second reply (a hit): its length, and the bytes that must not change (DAX: the whole
reply, the same every time; HTTP: the status line and the body, the headers holding a fresh
request id of fixed length). A key whose two replies differ in length, or that is not
answered 200 (HTTP) or with DAX's success status, stops the run before it starts.

Then it keeps N connections closed-loop (one request in flight each, the next written from
the callback that completed the last, as wrk) on uvloop (asyncio's loop where uvloop is
missing) for W + S seconds. A reply is complete when its key's recorded number of bytes has
arrived: nothing is parsed. Every ``--verify-every``-th reply (64) is also kept and compared
with the recorded bytes. A reply longer than expected or of the wrong content counts as an
error (``length`` or ``content``; the connection is then out of step and is replaced), as
do a dropped connection and no answer within ``--timeout`` (``timeout``). Only replies
completed inside the measured window count.

Output, as :mod:`bench.httpload`'s so that :func:`bench.measure.run_generator` reads it:
``BENCH_WINDOW start`` and ``BENCH_WINDOW end`` on stdout as the window opens and closes
(the harness samples the servers' CPU there), then ``BENCH_RESULT {json}``: requests,
seconds, requests/s, ``latency["all"]`` (p50, p90, p99, p99.9 in microseconds), errors by
kind, ``verified`` (replies compared), the loop, and the generator's own CPU time over the
window as a fraction of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cbor2

from bench.httpload import RESULT_MARKER, WINDOW_MARKER, latency_summary
from bench.workloads import GET, STREAM_LENGTH, Workload, Zipf, get_body, key_of, request_bytes
from daxproxy.dax import cbor
from daxproxy.dax.methods import AUTHORIZE_CONNECTION, GET_ITEM, SERVICE
from daxproxy.dax.session import MAGIC

HTTP, DAX = "http", "dax"
PROTOCOLS = (HTTP, DAX)
VERIFY_EVERY = 64
USER_AGENT = "DaxPythonClient-2.1.0"  # what the amazon-dax-client says it is
# The client's kwargs for a plain GetItem, {3: 0} (ReturnConsumedCapacity NONE), as it writes
# them: an indefinite-length map.
_NO_CAPACITY = b"\xbf\x03\x00\xff"
_SIGNED_DATE = "20261128T000000Z"


class WarmError(RuntimeError):
    """A key's reply is not a stable hit: the run would measure something else."""


# -- the requests ------------------------------------------------------------------------


def key_order(workload: Workload, length: int = STREAM_LENGTH) -> list[int]:
    """The key of each request, in order: :func:`bench.workloads.stream`'s draws for a plain
    GetItem workload (same seed, same Zipf, same order)."""
    if workload.operation != GET or workload.write_fraction or workload.consistent_fraction:
        raise ValueError(f"{workload.name} is not a plain GetItem workload")
    zipf = Zipf(workload.keys, workload.skew, random.Random(workload.seed))
    return [zipf.draw() for _ in range(length)]


def http_request(workload: Workload, n: int, host: str) -> bytes:
    return request_bytes(*get_body(workload, n), host)


def dax_opening(session: bytes) -> bytes:
    """A connection's first bytes: the preamble, then authorizeConnection (no reply)."""
    preamble = (MAGIC[1:].decode(), 0, session, {"UserAgent": USER_AGENT}, 0)
    scope = f"{_SIGNED_DATE[:8]}/us-east-1/dax/aws4_request"
    string_to_sign = f"AWS4-HMAC-SHA256\n{_SIGNED_DATE}\n{scope}\n{'0' * 64}".encode()
    authorize = (SERVICE, AUTHORIZE_CONNECTION.id, "bench", "0" * 64, string_to_sign, None)
    return b"".join(cbor.dumps(part) for part in (*preamble, *authorize, USER_AGENT))


def get_item_frame(table: str, key: str) -> bytes:
    """A getItem frame for a table whose key is one string."""
    parts = (SERVICE, GET_ITEM.id, table.encode(), key.encode())
    return b"".join(cbor.dumps(part) for part in parts) + _NO_CAPACITY


def dax_get_item(workload: Workload, n: int) -> bytes:
    return get_item_frame(workload.table, key_of(n))


def requests_by_key(
    workload: Workload, protocol: str, host: str, keys: Sequence[int]
) -> dict[int, bytes]:
    """Each distinct key's request bytes."""
    if protocol == HTTP:
        return {n: http_request(workload, n, host) for n in set(keys)}
    return {n: dax_get_item(workload, n) for n in set(keys)}


# -- the replies: their length and what must not change ----------------------------------


@dataclass(frozen=True, slots=True)
class Expected:
    """A key's hit reply: its length, and bytes it starts and ends with."""

    length: int
    head: bytes
    tail: bytes

    def matches(self, reply: bytes) -> bool:
        return (
            len(reply) == self.length and reply.startswith(self.head) and reply.endswith(self.tail)
        )


def http_reply_end(buffer: bytes) -> int:
    """Where a whole HTTP answer (Content-Length framed) ends in ``buffer``; -1 if not yet."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return -1
    length = 0
    for line in buffer[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    end = head_end + 4 + length
    return end if len(buffer) >= end else -1


def dax_reply_end(buffer: bytes) -> int:
    """Where a whole DAX success reply (status, then one item) ends; -1 if not yet.
    WarmError for an error reply."""
    stream = io.BytesIO(buffer)
    decoder = cbor2.CBORDecoder(stream)
    try:
        status = decoder.decode()
        if status != []:  # success is an empty array
            raise WarmError(f"a DAX error reply: {status!r:.200}")
        decoder.decode()
    except cbor2.CBORDecodeEOF:
        return -1
    return stream.tell()


def expected_of(protocol: str, reply: bytes) -> Expected:
    """What every later hit of the key must look like. WarmError if ``reply`` is no hit."""
    if protocol == DAX:
        return Expected(len(reply), reply, b"")
    if not reply.startswith(b"HTTP/1.1 200 "):
        raise WarmError(f"answered {reply[:12]!r}, not 200")
    body = reply[reply.index(b"\r\n\r\n") + 4 :]
    return Expected(len(reply), reply[: reply.index(b"\r\n") + 2], body)


def _exchange(sock: socket.socket, request: bytes, end_of: Callable[[bytes], int]) -> bytes:
    sock.sendall(request)
    buffer = b""
    while (end := end_of(buffer)) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise WarmError("the server closed the connection while warming")
        buffer += chunk
    if end != len(buffer):
        raise WarmError("more bytes than one reply while warming")
    return buffer


def warm(
    host: str, port: int, protocol: str, requests: dict[int, bytes], timeout: float
) -> dict[int, Expected]:
    """Read every key twice on one connection; each key's :class:`Expected` (the second)."""
    end_of = dax_reply_end if protocol == DAX else http_reply_end
    expected: dict[int, Expected] = {}
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if protocol == DAX:
            sock.sendall(dax_opening(random.randbytes(16)))
        for n, request in sorted(requests.items()):
            first = _exchange(sock, request, end_of)
            second = _exchange(sock, request, end_of)
            if len(first) != len(second):
                raise WarmError(f"key {n}: replies of {len(first)} then {len(second)} bytes")
            expected[n] = expected_of(protocol, second)
    return expected


# -- the load ----------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One connection, one request in flight; a reply is whole when its bytes have come."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.key = -1
        self.sent_at = 0  # perf_counter_ns of the request in flight; 0: none
        self.got = 0
        self.kept: bytearray | None = None  # the reply, when it is one to verify

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.load.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.kept is not None:
            self.kept += data
        if self.got >= self.load.expected[self.key].length:
            self.load.answered(self)


class Load:
    def __init__(
        self,
        address: tuple[str, int],
        opening: Callable[[], bytes],
        keys: Sequence[int],
        requests: dict[int, bytes],
        expected: dict[int, Expected],
        *,
        connections: int,
        timeout: float,
        verify_every: int,
    ) -> None:
        self.host, self.port = address
        self.opening = opening
        self.keys, self.requests, self.expected = keys, requests, expected
        self.connections = connections
        self.timeout_ns = int(timeout * 1e9)
        self.verify_every = verify_every
        self.latencies_us: list[int] = []
        self.errors = {"length": 0, "content": 0, "timeout": 0, "dropped": 0, "connect": 0}
        self.verified = 0
        self.window_start = self.window_end = 0
        self.stopping = False
        self._next = 0
        self._open: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()

    def in_window(self, now: int) -> bool:
        return 0 < self.window_start <= now and (self.window_end == 0 or now <= self.window_end)

    def connect(self, delay: float = 0.0) -> None:
        task = asyncio.ensure_future(self._connect(delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: Connection(self), self.host, self.port)
        except OSError:
            if self.in_window(time.perf_counter_ns()):
                self.errors["connect"] += 1
            if not self.stopping:
                self.connect(0.01)

    def opened(self, connection: Connection) -> None:
        self._open.add(connection)
        assert connection.transport is not None
        opening = self.opening()
        if opening:
            connection.transport.write(opening)
        self.send_next(connection)

    def send_next(self, connection: Connection) -> None:
        transport = connection.transport
        assert transport is not None
        if self.stopping:
            transport.close()
            return
        index = self._next
        self._next = index + 1
        key = self.keys[index % len(self.keys)]
        connection.key = key
        connection.got = 0
        connection.kept = bytearray() if index % self.verify_every == 0 else None
        connection.sent_at = time.perf_counter_ns()
        transport.write(self.requests[key])

    def answered(self, connection: Connection) -> None:
        now = time.perf_counter_ns()
        expected = self.expected[connection.key]
        counted = self.in_window(now)
        error = None
        if connection.got != expected.length:
            error = "length"
        elif connection.kept is not None:
            if counted:
                self.verified += 1
            if not expected.matches(bytes(connection.kept)):
                error = "content"
        if error is not None:  # out of step with the server: start afresh
            if counted:
                self.errors[error] += 1
            connection.sent_at = 0
            assert connection.transport is not None
            connection.transport.abort()
            return
        if counted:
            self.latencies_us.append((now - connection.sent_at) // 1000)
        connection.sent_at = 0
        self.send_next(connection)

    def lost(self, connection: Connection) -> None:
        self._open.discard(connection)
        if connection.sent_at:
            if self.in_window(time.perf_counter_ns()):
                kind = "timeout" if connection.sent_at < 0 else "dropped"
                self.errors[kind] += 1
            connection.sent_at = 0
        if not self.stopping:
            self.connect()
        elif not self._open:
            self._idle.set()

    async def watchdog(self) -> None:
        while not self.stopping:
            await asyncio.sleep(0.1)
            now = time.perf_counter_ns()
            for connection in list(self._open):
                sent = connection.sent_at
                if sent > 0 and now - sent > self.timeout_ns and connection.transport:
                    connection.sent_at = -1  # lost() counts it as a timeout
                    connection.transport.abort()

    async def run(self, warmup: float, duration: float) -> dict[str, Any]:
        guard = asyncio.ensure_future(self.watchdog())
        try:
            for _ in range(self.connections):
                self.connect()
            if warmup > 0:
                await asyncio.sleep(warmup)
            self.window_start = time.perf_counter_ns()
            cpu_start = time.process_time()
            _mark("start")
            await asyncio.sleep(duration)
            self.window_end = time.perf_counter_ns()
            cpu = time.process_time() - cpu_start
            _mark("end")
            self.stopping = True
            if self._open:  # the replies in flight arrive, uncounted: no resets
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
        seconds = (self.window_end - self.window_start) / 1e9
        return self.summary(seconds, cpu)

    def summary(self, seconds: float, cpu_seconds: float) -> dict[str, Any]:
        count = len(self.latencies_us)
        return {
            "requests": count,
            "seconds": round(seconds, 6),
            "rps": round(count / seconds, 2) if seconds > 0 else 0.0,
            "latency": {"all": latency_summary(self.latencies_us)},
            "errors": dict(self.errors),
            "verified": self.verified,
            "timeline": {"bucket_s": seconds, "counts": {}},
            "loadgen_cpu_s": round(cpu_seconds, 4),
            "loadgen_cpu_fraction": round(cpu_seconds / seconds, 4) if seconds > 0 else 0.0,
        }


def _mark(what: str) -> None:
    sys.stdout.write(f"{WINDOW_MARKER}{what}\n")
    sys.stdout.flush()


def _runner() -> tuple[Callable[[Any], Any], str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"
    return uvloop.run, "uvloop"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--url", required=True, help="the target, e.g. http://127.0.0.1:8111")
    add("--protocol", choices=PROTOCOLS, required=True)
    add("--workload", required=True, help="a GetItem workload as JSON (Workload.to_json)")
    add("--connections", type=int, default=32)
    add("--duration", type=float, default=5.0, help="seconds measured")
    add("--warmup", type=float, default=0.0, help="seconds of load before the window opens")
    add("--timeout", type=float, default=5.0, help="seconds before a request is a timeout")
    add("--verify-every", type=int, default=VERIFY_EVERY, help="compare every Nth reply")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workload = Workload.from_json(json.loads(args.workload))
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    keys = key_order(workload)
    requests = requests_by_key(workload, args.protocol, f"{host}:{port}", keys)
    try:
        expected = warm(host, port, args.protocol, requests, args.timeout)
    except (WarmError, OSError) as error:
        print(f"bench.replay: warming failed: {error}", file=sys.stderr)
        return 1

    def opening() -> bytes:
        return dax_opening(random.randbytes(16)) if args.protocol == DAX else b""

    run, loop_name = _runner()

    async def go() -> dict[str, Any]:
        load = Load(
            (host, port),
            opening,
            keys,
            requests,
            expected,
            connections=args.connections,
            timeout=args.timeout,
            verify_every=max(1, args.verify_every),
        )
        return await load.run(args.warmup, args.duration)

    result = run(go())
    result.update(generator=f"replay-{args.protocol}", loop=loop_name)
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
