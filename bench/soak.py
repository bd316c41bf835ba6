"""The soak: ``python -m bench.soak [--duration S] [options]`` (``make soak``).

Contract: it starts one upstream (as ``bench.run``: dynalite when installed, else moto, or a
URL), seeds two tables whose items (100 B to 40 KB, log-uniform) add up to
``--key-space-factor`` times the cache budgets, and starts ``python -m daxproxy`` with small
budgets (``--item-cache-mib``, ``--query-cache-mib``), so that both caches fill, evict and
churn. After measuring the proxy's idle resident memory (caches empty) it drives a mixed
load for ``--duration`` seconds at a steady ``--rate`` over ``--concurrency`` keep-alive
connections (the same callback-driven client as :mod:`bench.httpload`, in this process):
GetItem (Zipf keys), BatchGetItem, Query and Scan pages, PutItem, UpdateItem and DeleteItem,
and requests that must fail (a missing table, a wrong key). Every ``--interval`` seconds it
samples the proxy's RSS (``/proc/<pid>/status``) and CPU time (``/proc/<pid>/stat``), its
``GET /metrics`` (cache bytes, entries and evictions per cache) and the interval's answers:
p50/p99 per outcome (``hit``, ``miss``, ``bypass``, ``write``, ``rejected`` for the expected
4xx), requests/s and errors (any other non-2xx, a timeout, a dropped connection).

It writes ``soak.md`` (also printed on stdout), ``soak.json`` and ``soak.png`` to ``--out``
(``bench/results/``, git-ignored), progress on stderr, and gives its verdict: resident
memory levelled off (the highest RSS of the last third of the run exceeds the highest of the
middle third by less than :data:`FLAT_MIB` MiB or :data:`FLAT_SHARE` of it, whichever is
larger), its peak stayed below item budget + query budget + ``--overhead-mib``, both caches
filled and evicted (else the run proved nothing), and at most :data:`ERROR_SHARE` of the
requests failed unexpectedly. Exit code 0 when every check holds; 1 when one fails (the
reasons on stderr and in the report) or a server failed to start; 130 when interrupted.
Every process it starts is stopped on the way out.

For finding where memory goes (both slow the proxy down a little, ``--tracemalloc`` a lot):
``--malloc-stats`` runs the proxy under a small launcher that reports glibc's heap in use,
heap free and mmap'ed bytes at every sample (a leak grows the first, the allocator's slack
the second); ``--tracemalloc`` also traces the proxy's Python allocations and reports which
source lines grew between snapshots. ``--proxy-env NAME=VALUE`` adds to the proxy's
environment (e.g. ``MALLOC_MMAP_THRESHOLD_=32768``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime
import io
import itertools
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import dataset, httpload, machine, measure, processes, targets
from bench.progress import Progress
from bench.run import DEFAULT_OUT, describe_machine
from bench.workloads import (
    KEY_ATTRIBUTE,
    PAGES_PER_PARTITION,
    READ,
    SORT_ATTRIBUTE,
    WRITE,
    Workload,
    Zipf,
    item,
    key_of,
    page_item,
    page_position,
    request_bytes,
)

MIB = 1024 * 1024
SCHEMA = "daxproxy-soak/1"
MARKDOWN_NAME, JSON_NAME, PLOT_NAME = "soak.md", "soak.json", "soak.png"
ITEM_TABLE, PAGE_TABLE = "daxproxy-soak-items", "daxproxy-soak-pages"
MISSING_TABLE = "daxproxy-soak-no-such-table"
MIN_ITEM_BYTES, MAX_ITEM_BYTES = 100, 40 * 1024
PAGE_ITEMS = 10
BATCH_KEYS = 10
SCAN_LIMIT = 10
# Resident memory beyond the two cache budgets that a proxy may use: its idle footprint
# (interpreter, aiohttp, aiobotocore, prometheus_client: about 51 MiB here), its working
# memory at full caches (about 11 MiB: buffers, connections, metrics) and the allocator's
# free heap under churn (3 MiB to 14 MiB and growing in 10 minutes). Measured by this soak:
# bench/README.md, "Soak".
DEFAULT_OVERHEAD_MIB = 100.0
# Levelled off: the last third's highest RSS over the middle third's by less than this.
FLAT_MIB = 2.0
FLAT_SHARE = 0.02
# A cache counts as full at this share of its budget.
FULL_SHARE = 0.9
# Unexpected errors (not the requests meant to fail) allowed, as a share of all requests.
ERROR_SHARE = 0.001
REQUEST_TIMEOUT_S = 5.0
# Rows in the Markdown table at most: consecutive intervals are merged beyond that.
TABLE_ROWS = 20
# --malloc-stats and --tracemalloc (debugging): the proxy runs under this launcher, which on
# SIGUSR1 writes glibc's malloc statistics (and tracemalloc's traced bytes, when tracing) to
# $BENCH_SOAK_DEBUG/stats.json, and on SIGUSR2 dumps a tracemalloc snapshot there.
TRACE_FRAMES = 4
_LAUNCHER = """
import ctypes, json, os, runpy, signal, sys, tracemalloc
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
          "fordblks", "keepcost")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]
try:
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
except (OSError, AttributeError):
    mallinfo2 = None
folder = os.environ.pop("BENCH_SOAK_DEBUG")
counts = {"stats": 0, "snapshots": 0}
def stats(signum, frame):
    counts["stats"] += 1
    info = mallinfo2() if mallinfo2 else None
    facts = {
        "seq": counts["stats"],
        "malloc": {name: getattr(info, name) for name in FIELDS} if info else None,
        "traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
    }
    path = os.path.join(folder, "stats.json")
    with open(path + ".part", "w") as out:
        json.dump(facts, out)
    os.replace(path + ".part", path)
def snapshot(signum, frame):
    counts["snapshots"] += 1
    path = os.path.join(folder, "%04d" % counts["snapshots"])
    tracemalloc.take_snapshot().dump(path + ".part")
    os.rename(path + ".part", path + ".tracemalloc")
signal.signal(signal.SIGUSR1, stats)
signal.signal(signal.SIGUSR2, snapshot)
sys.argv[0] = "daxproxy"
runpy.run_module("daxproxy", run_name="__main__", alter_sys=True)
"""
TRACE_TOP = 12
# The requests meant to fail (a missing table, a wrong key): a 4xx is their right answer.
REJECT = 2
OUTCOMES = ("hit", "miss", "bypass", "stale", "write", "rejected", "none")
# The mix: operation and its share of the requests.
MIX = (
    ("GetItem", 0.50),
    ("BatchGetItem", 0.08),
    ("Query", 0.14),
    ("Scan", 0.04),
    ("PutItem", 0.10),
    ("UpdateItem", 0.05),
    ("DeleteItem", 0.03),
    ("missing-table", 0.03),
    ("bad-key", 0.03),
)
_LOG_MIN, _LOG_MAX = math.log(MIN_ITEM_BYTES), math.log(MAX_ITEM_BYTES)
# The mean of a log-uniform size between the two bounds.
MEAN_ITEM_BYTES = (MAX_ITEM_BYTES - MIN_ITEM_BYTES) / (_LOG_MAX - _LOG_MIN)


def item_size(rng: random.Random) -> int:
    """An item size from 100 B to 40 KB, log-uniform: as many 100-1,000 B items as 4-40 KB."""
    return round(math.exp(rng.uniform(_LOG_MIN, _LOG_MAX)))


def _seeded_size(seed: int, *position: int) -> int:
    return item_size(random.Random(hash((seed, *position))))


@dataclass(frozen=True)
class KeySpace:
    """The two tables: ``items`` keys of the GetItem table, ``partitions`` Query partitions
    of PAGES_PER_PARTITION pages of PAGE_ITEMS items; sizes drawn from ``seed``."""

    items: int
    partitions: int
    seed: int

    @classmethod
    def for_budgets(cls, item_bytes: int, query_bytes: int, factor: float, seed: int) -> KeySpace:
        items = max(20, math.ceil(factor * item_bytes / MEAN_ITEM_BYTES))
        per_partition = PAGE_ITEMS * PAGES_PER_PARTITION * MEAN_ITEM_BYTES
        return cls(items, max(2, math.ceil(factor * query_bytes / per_partition)), seed)

    @property
    def pages(self) -> int:
        return self.partitions * PAGES_PER_PARTITION

    def item(self, n: int) -> dict[str, Any]:
        return item(n, _seeded_size(self.seed, n))

    def page_items(self) -> Iterator[dict[str, Any]]:
        for partition in range(self.partitions):
            for index in range(PAGE_ITEMS * PAGES_PER_PARTITION):
                yield page_item(partition, index, _seeded_size(self.seed, partition, index))

    def describe(self) -> dict[str, Any]:
        page_items = self.pages * PAGE_ITEMS
        return {
            "items": self.items,
            "item_bytes_estimate": round(self.items * MEAN_ITEM_BYTES),
            "query_pages": self.pages,
            "page_items": page_items,
            "page_bytes_estimate": round(page_items * MEAN_ITEM_BYTES),
            "item_sizes": f"{MIN_ITEM_BYTES}-{MAX_ITEM_BYTES} bytes, log-uniform",
        }


def seed_tables(upstream_url: str, space: KeySpace) -> int:
    """Create both tables in the upstream and write every item; the items written."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = dataset._client(upstream_url)
    tables = (
        (ITEM_TABLE, (KEY_ATTRIBUTE,), (space.item(n) for n in range(space.items))),
        (PAGE_TABLE, (KEY_ATTRIBUTE, SORT_ATTRIBUTE), space.page_items()),
    )
    written = 0
    try:
        for table, keys, items in tables:
            dataset.create_table(client, table, keys)
            batches = _batches(items, 25)
            with ThreadPoolExecutor(dataset.SEED_THREADS) as pool:
                for count in pool.map(lambda b, t=table: _write(client, t, b), batches):
                    written += count
    except (BotoCoreError, ClientError) as exc:
        raise dataset.DataError(f"could not seed the soak's tables: {exc}") from None
    return written


def _write(client: Any, table: str, batch: list[dict[str, Any]]) -> int:
    dataset._write(client, table, batch)
    return len(batch)


def _batches(items: Iterator[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    while chunk := list(itertools.islice(items, size)):
        out.append(chunk)
    return out


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


class Mix:
    """Draws the next request of the mix: (kind, operation, JSON body). Seeded."""

    def __init__(self, space: KeySpace, skew: float, seed: int) -> None:
        self._rng = random.Random(seed)
        self._space = space
        self._keys = Zipf(space.items, skew, self._rng)
        self._pages = Zipf(space.pages, skew, self._rng)
        self._names = [name for name, _ in MIX]
        self._cumulative = list(itertools.accumulate(share for _, share in MIX))
        self._version = 1
        self._builders: dict[str, Callable[[], tuple[int, str, dict[str, Any]]]] = {
            "GetItem": lambda: (READ, "GetItem", {"TableName": ITEM_TABLE, "Key": self._key()}),
            "BatchGetItem": self._batch,
            "Query": self._query,
            "Scan": self._scan,
            "PutItem": self._put,
            "UpdateItem": self._update,
            "DeleteItem": lambda: (
                WRITE,
                "DeleteItem",
                {"TableName": ITEM_TABLE, "Key": self._key()},
            ),
            "missing-table": lambda: (
                REJECT,
                "GetItem",
                {"TableName": MISSING_TABLE, "Key": self._key()},
            ),
            "bad-key": lambda: (
                REJECT,
                "GetItem",
                {"TableName": ITEM_TABLE, "Key": {"no_such_key": {"S": "x"}}},
            ),
        }

    def _key(self, n: int | None = None) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": key_of(self._keys.draw() if n is None else n)}}

    def next(self) -> tuple[int, str, str]:
        at = self._rng.random() * self._cumulative[-1]
        name = self._names[min(bisect.bisect_left(self._cumulative, at), len(self._names) - 1)]
        kind, operation, body = self._builders[name]()
        return kind, operation, _compact(body)

    def _batch(self) -> tuple[int, str, dict[str, Any]]:
        keys = [self._key(n) for n in self._keys.distinct(min(BATCH_KEYS, self._space.items))]
        return READ, "BatchGetItem", {"RequestItems": {ITEM_TABLE: {"Keys": keys}}}

    def _query(self) -> tuple[int, str, dict[str, Any]]:
        partition, first = page_position(self._pages.draw(), PAGE_ITEMS)
        pk = {"S": f"bench#part#{partition:05d}"}
        body: dict[str, Any] = {
            "TableName": PAGE_TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": pk},
            "Limit": PAGE_ITEMS,
        }
        if first:
            body["ExclusiveStartKey"] = {
                KEY_ATTRIBUTE: pk,
                SORT_ATTRIBUTE: {"S": f"{first - 1:05d}"},
            }
        return READ, "Query", body

    def _scan(self) -> tuple[int, str, dict[str, Any]]:
        body: dict[str, Any] = {"TableName": ITEM_TABLE, "Limit": SCAN_LIMIT}
        start = self._rng.randrange(self._space.items + 1)
        if start < self._space.items:  # else the first page
            body["ExclusiveStartKey"] = self._key(start)
        return READ, "Scan", body

    def _put(self) -> tuple[int, str, dict[str, Any]]:
        self._version += 1
        n = self._keys.draw()
        written = item(n, item_size(self._rng), self._version)
        return WRITE, "PutItem", {"TableName": ITEM_TABLE, "Item": written}

    def _update(self) -> tuple[int, str, dict[str, Any]]:
        return (
            WRITE,
            "UpdateItem",
            {
                "TableName": ITEM_TABLE,
                "Key": self._key(),
                "UpdateExpression": "ADD version :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            },
        )


def _fresh_tally() -> httpload.Tally:
    # One bucket for the whole interval: the soak's timeline is its samples.
    return httpload.Tally(
        bucket_ns=1 << 62,
        latencies_us={c: [] for c in OUTCOMES},
        buckets={c: [] for c in OUTCOMES},
    )


class SoakLoad(httpload.Generator):
    """:class:`bench.httpload.Generator` sending the mix, drawn afresh for every request,
    paced to ``rate`` requests/s (0: as fast as the connections go), its tally taken and
    renewed at each sample. A request meant to fail that gets a 4xx counts as ``rejected``;
    any other answer outside 2xx is an error."""

    def __init__(self, url: str, mix: Mix, connections: int, rate: float) -> None:
        # The parent's precomputed stream is not used: a one-key workload keeps it cheap.
        super().__init__(url, Workload("soak", items=1), connections, REQUEST_TIMEOUT_S, 1e9)
        self.requests = []
        self.mix = mix
        self.tally = _fresh_tally()
        self._gap_ns = round(1e9 / rate) if rate > 0 else 0
        self._slot = 0
        self._host = f"{self.host}:{self.port}"

    def take(self) -> httpload.Tally:
        tally, self.tally = self.tally, _fresh_tally()
        return tally

    def send_next(self, connection: httpload.Connection, started: int = 0) -> None:
        if self._gap_ns and not self.stopping:
            now = time.perf_counter_ns()
            slot = max(self._slot, now)
            self._slot = slot + self._gap_ns
            if slot > now:
                loop = asyncio.get_running_loop()
                loop.call_later((slot - now) / 1e9, self._send, connection, 0)
                return
        self._send(connection, started)

    def _send(self, connection: httpload.Connection, started: int) -> None:
        transport = connection.transport
        if transport is None or transport.is_closing():
            return
        if self.stopping:
            transport.close()
            return
        kind, operation, body = self.mix.next()
        connection.kind = kind
        connection.sent_at = started or time.perf_counter_ns()
        transport.write(request_bytes(operation, body, self._host))

    def answered(self, connection: httpload.Connection, head: httpload.Head) -> None:
        now = time.perf_counter_ns()
        if self.window.open_at(now):
            expected = connection.kind == REJECT
            if expected and 400 <= head.status < 500:
                self.tally.count("rejected", now - connection.sent_at, 0)
            elif expected or not 200 <= head.status < 300:
                self.tally.errors["status"] += 1
            else:
                label = "write" if connection.kind == WRITE else head.label
                klass = label if label in OUTCOMES else "none"
                self.tally.count(klass, now - connection.sent_at, 0)
        connection.sent_at = 0
        if head.close:
            assert connection.transport is not None
            connection.transport.close()
        else:
            self.send_next(connection)


def read_metrics(url: str) -> dict[str, Any] | None:
    """The proxy's view from ``GET /metrics``: per cache (``item``, ``query``) its bytes,
    budget, entries and evictions by reason; upstream calls; None without an answer."""
    body = measure._get(url, "/metrics")
    if body is None:
        return None
    caches: dict[str, dict[str, Any]] = {}
    upstream = 0.0
    for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name in (
                "daxproxy_upstream_request_duration_seconds_count",
                "daxproxy_upstream_failures_total",
            ):
                upstream += value
                continue
            cache = labels.get("cache")
            if cache not in ("item", "query"):
                continue
            figures = caches.setdefault(cache, {"evictions": {}})
            if name == "daxproxy_cache_evictions_total":
                figures["evictions"][labels["reason"]] = int(value)
            elif name in ("daxproxy_cache_bytes", "daxproxy_cache_max_bytes"):
                figures[name.removeprefix("daxproxy_cache_")] = int(value)
            elif name == "daxproxy_cache_entries":
                figures["entries"] = int(value)
    return {"caches": caches, "upstream_requests": round(upstream)}


def _mib(value: float | None) -> float | None:
    return None if value is None else round(value / MIB, 2)


def latency_figures(values: list[int]) -> dict[str, float]:
    summary = httpload.latency_summary(values)
    return {k: summary[k] for k in ("count", "p50_us", "p99_us", "max_us")}


@dataclass
class Soak:
    """One run: its settings, the processes it watches, and the points it sampled."""

    settings: dict[str, Any]
    url: str
    pid: int | None
    upstream_pid: int | None
    progress: Progress
    points: list[dict[str, Any]] = field(default_factory=list)
    raw: list[dict[str, list[int]]] = field(default_factory=list)  # per point, not in JSON
    started: float = 0.0
    # --malloc-stats, --tracemalloc: where the launcher writes; after which samples (1-based)
    # to ask for a snapshot; what each snapshot was (in order).
    debug_dir: Path | None = None
    trace_at: frozenset[int] = frozenset()
    traced: list[dict[str, Any]] = field(default_factory=list)
    _cpu: float | None = None
    _at: float = 0.0
    _stats: int = 0

    def baseline(self) -> dict[str, Any]:
        """The idle proxy: RSS and what /metrics says, caches empty."""
        self._cpu, self._at = measure.cpu_seconds(self.pid), time.monotonic()
        rss = measure.rss_bytes(self.pid)
        idle = {"rss_bytes": rss, "rss_mib": _mib(rss), "metrics": read_metrics(self.url)}
        idle["malloc"] = self._malloc()
        if self.trace_at:
            self._snapshot("idle", 0.0, idle)
        return idle

    def _malloc(self) -> dict[str, Any] | None:
        """Under the launcher: glibc's heap in use and free, mmap'ed bytes, traced bytes."""
        if self.debug_dir is None or self.pid is None:
            return None
        self._stats += 1
        os.kill(self.pid, signal.SIGUSR1)
        path, deadline = self.debug_dir / "stats.json", time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                facts = json.loads(path.read_text())
                if facts["seq"] == self._stats:
                    malloc = facts["malloc"] or {}
                    return {
                        "heap_used_mib": _mib(malloc.get("uordblks")),
                        "heap_free_mib": _mib(malloc.get("fordblks")),
                        "mmap_mib": _mib(malloc.get("hblkhd")),
                        "traced_mib": _mib(facts["traced"]),
                    }
            time.sleep(0.02)
        return None

    def _snapshot(self, label: str, t_s: float, point: dict[str, Any]) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGUSR2)
        self.traced.append(
            {"label": label, "t_s": t_s, "rss_mib": point["rss_mib"], **(point["malloc"] or {})}
        )

    def sample(self, tally: httpload.Tally) -> dict[str, Any]:
        now = time.monotonic()
        cpu = measure.cpu_seconds(self.pid)
        rss = measure.rss_bytes(self.pid)
        seconds = max(1e-9, now - self._at)
        used = None if cpu is None or self._cpu is None else cpu - self._cpu
        self._cpu, self._at = cpu, now
        latencies = {c: v for c, v in tally.latencies_us.items() if v}
        requests = sum(len(v) for v in latencies.values())
        errors = dict(tally.errors)
        point: dict[str, Any] = {
            "t_s": round(now - self.started, 2),
            "rss_bytes": rss,
            "rss_mib": _mib(rss),
            "upstream_rss_mib": _mib(measure.rss_bytes(self.upstream_pid)),
            "cpu_s": cpu,
            "cpu_fraction": None if used is None else round(used / seconds, 3),
            "requests": requests,
            "rps": round(requests / seconds, 1),
            "latency": {c: latency_figures(v) for c, v in latencies.items()},
            "errors": errors,
            "error_count": sum(errors.values()),
            "metrics": read_metrics(self.url),
        }
        point["malloc"] = self._malloc()
        self.points.append(point)
        self.raw.append(latencies)
        if len(self.points) in self.trace_at:
            self._snapshot(f"t={point['t_s']:g} s", point["t_s"], point)
        return point


def start_soak_proxy(
    upstream_url: str,
    work_dir: Path,
    options: list[str],
    *,
    debug: bool = False,
    trace: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[processes.Child, Path | None]:
    """daxproxy as ``python -m daxproxy``, or under the launcher when ``debug`` (with
    tracemalloc when ``trace``), with ``env`` added to its environment; and where the
    launcher writes (None without it)."""
    folder = work_dir / "debug" if debug or trace else None
    extra = {**processes.PROXY_ENV, **(env or {})}
    argv = [sys.executable]
    if folder is None:
        argv += ["-m", "daxproxy"]
    else:
        folder.mkdir()
        extra["BENCH_SOAK_DEBUG"] = str(folder)
        argv += [*(["-X", f"tracemalloc={TRACE_FRAMES}"] if trace else []), "-c", _LAUNCHER]
    argv += ["--host", processes.HOST, "--port", "{port}", "--upstream", upstream_url]
    argv += ["--log-level", "warning", *options]
    child = processes.start_child("daxproxy-soak", argv, work_dir / "daxproxy-soak.log", extra)
    return child, folder


def trace_report(soak: Soak, timeout: float = 120.0) -> dict[str, Any] | None:
    """Where the traced memory grew: the last snapshot against the idle one and against the
    one taken a third of the way in (the caches full by then), by source line."""
    import tracemalloc

    if soak.debug_dir is None or not soak.traced:
        return None
    deadline = time.monotonic() + timeout
    while len(list(soak.debug_dir.glob("*.tracemalloc"))) < len(soak.traced):
        if time.monotonic() > deadline:
            return {"error": "the proxy did not write every snapshot in time"}
        time.sleep(0.5)
    files = sorted(soak.debug_dir.glob("*.tracemalloc"))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    snapshots = [tracemalloc.Snapshot.load(str(f)).filter_traces(ignore) for f in files]
    for facts, snapshot in zip(soak.traced, snapshots, strict=True):
        facts["traces"] = len(snapshot.traces)
    report: dict[str, Any] = {"frames": TRACE_FRAMES, "snapshots": soak.traced}
    last = snapshots[-1]
    for name, index in (("since_idle", 0), ("since_first_third", 1)):
        if index >= len(snapshots) - 1:
            continue
        lines = last.compare_to(snapshots[index], "lineno")[:TRACE_TOP]
        report[name] = [_grown(stat) for stat in lines]
    if len(snapshots) > 2:
        stacks = last.compare_to(snapshots[1], "traceback")[:3]
        report["top_tracebacks"] = [
            {**_grown(stat), "traceback": stat.traceback.format()} for stat in stacks
        ]
    return report


def _grown(stat: Any) -> dict[str, Any]:
    frame = stat.traceback[0]
    return {
        "where": f"{frame.filename}:{frame.lineno}",
        "size_diff_kib": round(stat.size_diff / 1024, 1),
        "size_kib": round(stat.size / 1024, 1),
        "count_diff": stat.count_diff,
    }


def trace_lines(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return []
    if "error" in report:
        return ["## tracemalloc", "", report["error"], ""]
    lines = [
        "## tracemalloc (the proxy traced, so slower)",
        "",
        "Taken just after the sample of the same time in the malloc table (the snapshot's "
        "own objects, freed, stay in the heap as free space).",
        "",
        "| snapshot | RSS MiB | traced MiB | traces |",
        "|---|---:|---:|---:|",
        *(
            f"| {s['label']} | {s['rss_mib']} | {s.get('traced_mib')} | {s['traces']:,} |"
            for s in report["snapshots"]
        ),
    ]
    for name, title in (("since_idle", "idle"), ("since_first_third", "a third of the way in")):
        if name not in report:
            continue
        lines += ["", f"Growth of the last snapshot since {title}, by line:", ""]
        lines += ["| where | grew KiB | now KiB | blocks grew |", "|---|---:|---:|---:|"]
        lines += [
            f"| `{g['where']}` | {g['size_diff_kib']:,} | {g['size_kib']:,} | {g['count_diff']:,} |"
            for g in report[name]
        ]
    return [*lines, ""]


def _cache(point: dict[str, Any], name: str, key: str = "bytes") -> Any:
    return (((point.get("metrics") or {}).get("caches") or {}).get(name) or {}).get(key)


def progress_text(point: dict[str, Any], budgets: tuple[int, int]) -> str:
    item, query = _cache(point, "item"), _cache(point, "query")
    hit = (point["latency"].get("hit") or {}).get("p99_us")
    miss = (point["latency"].get("miss") or {}).get("p99_us")
    return (
        f"t={point['t_s']:.0f} s: RSS {point['rss_mib']} MiB, item cache "
        f"{_mib(item)}/{_mib(budgets[0])} MiB, query cache {_mib(query)}/{_mib(budgets[1])} "
        f"MiB, {point['rps']:.0f} req/s, p99 hit {_ms(hit)} miss {_ms(miss)} ms, "
        f"{point['error_count']} errors"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f}"


async def drive(soak: Soak, load: SoakLoad, duration: float, interval: float) -> None:
    """Run the load for ``duration`` seconds and sample every ``interval`` meanwhile."""
    count = max(1, math.ceil(duration / interval))
    budgets = (soak.settings["item_cache_bytes"], soak.settings["query_cache_bytes"])

    async def sampler() -> None:
        for index in range(1, count + 1):
            await asyncio.sleep(max(0.0, soak.started + index * interval - time.monotonic()))
            point = await asyncio.to_thread(soak.sample, load.take())
            soak.progress.step(progress_text(point, budgets))

    soak.started = time.monotonic()
    task = asyncio.ensure_future(sampler())
    try:
        # The generator's window marks are for bench.measure: stdout is the report's.
        with contextlib.redirect_stdout(io.StringIO()):
            await load.run(0.0, count * interval + min(1.0, interval / 2))
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _thirds(points: list[dict[str, Any]], end: float) -> tuple[list[float], list[float]]:
    middle = [p["rss_bytes"] for p in points if end / 3 < p["t_s"] <= 2 * end / 3]
    last = [p["rss_bytes"] for p in points if p["t_s"] > 2 * end / 3]
    return [v for v in middle if v], [v for v in last if v]


def verdict(
    points: list[dict[str, Any]], baseline: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """The checks of the run, each with its figures, and ``ok`` when every one holds."""
    end = points[-1]["t_s"] if points else 0.0
    middle, last = _thirds(points, end)
    rss = [p["rss_bytes"] for p in points if p["rss_bytes"]]
    budget = settings["item_cache_bytes"] + settings["query_cache_bytes"]
    bound = budget + settings["overhead_mib"] * MIB
    reasons: list[str] = []
    growth = None
    if middle and last:
        growth = max(last) - max(middle)
        allowed = max(FLAT_MIB * MIB, FLAT_SHARE * max(middle))
        if growth >= allowed:
            reasons.append(
                f"RSS did not level off: the last third's peak is {growth / MIB:.1f} MiB above "
                f"the middle third's (allowed: under {allowed / MIB:.1f} MiB)"
            )
    else:
        allowed = FLAT_MIB * MIB
        reasons.append("too few samples to tell whether RSS levelled off")
    peak = max(rss) if rss else None
    if peak is None:
        reasons.append("the proxy's RSS could not be read")
    elif peak >= bound:
        reasons.append(
            f"peak RSS {peak / MIB:.1f} MiB is not below the budgets plus overhead "
            f"({bound / MIB:.1f} MiB)"
        )
    filled = {}
    for name in ("item", "query"):
        wanted = settings[f"{name}_cache_bytes"] * FULL_SHARE
        full_at = next((p["t_s"] for p in points if (_cache(p, name) or 0) >= wanted), None)
        evictions = (_cache(points[-1], name, "evictions") or {}) if points else {}
        filled[name] = {"full_at_s": full_at, "size_evictions": evictions.get("size", 0)}
        if full_at is None or not evictions.get("size"):
            reasons.append(
                f"the {name} cache never filled and evicted (full at {full_at} s, "
                f"{evictions.get('size', 0)} size evictions): the run proved nothing about it"
            )
    requests = sum(p["requests"] for p in points)
    errors = sum(p["error_count"] for p in points)
    if errors > ERROR_SHARE * max(1, requests):
        reasons.append(f"{errors:,} unexpected errors in {requests:,} requests")
    idle = baseline.get("rss_bytes")
    if settings.get("tracemalloc"):
        # Each snapshot costs the proxy RSS of its own (the traces as Python objects).
        memory = ("RSS", "peak RSS", "the proxy's RSS")
        reasons = [r for r in reasons if not r.startswith(memory)]
    return {
        "ok": not reasons,
        "reasons": reasons,
        "idle_rss_mib": _mib(idle),
        "peak_rss_mib": _mib(peak),
        "peak_over_idle_mib": None if peak is None or idle is None else _mib(peak - idle),
        "peak_over_budgets_mib": None if peak is None else _mib(peak - budget),
        "budgets_mib": _mib(budget),
        "bound_mib": _mib(bound),
        "middle_third_peak_mib": _mib(max(middle)) if middle else None,
        "last_third_peak_mib": _mib(max(last)) if last else None,
        "last_third_growth_mib": _mib(growth),
        "growth_allowed_mib": _mib(allowed),
        "caches": filled,
        "requests": requests,
        "errors": errors,
    }


def _groups(count: int, rows: int) -> list[range]:
    size = max(1, math.ceil(count / rows))
    return [range(start, min(count, start + size)) for start in range(0, count, size)]


def table_rows(soak: Soak, rows: int = TABLE_ROWS) -> list[dict[str, Any]]:
    """At most ``rows`` rows: consecutive intervals merged, the memory figures of the last,
    the latency percentiles over all of their answers."""
    out = []
    for group in _groups(len(soak.points), rows):
        points = [soak.points[i] for i in group]
        last = points[-1]
        merged: dict[str, list[int]] = {}
        for i in group:
            for klass, values in soak.raw[i].items():
                merged.setdefault(klass, []).extend(values)
        start = soak.points[group.start - 1]["t_s"] if group.start else 0.0
        requests = sum(p["requests"] for p in points)
        out.append(
            {
                "t_s": last["t_s"],
                "rss_mib": last["rss_mib"],
                "peak_rss_mib": max((p["rss_mib"] or 0) for p in points),
                "item_mib": _mib(_cache(last, "item")),
                "query_mib": _mib(_cache(last, "query")),
                "entries": (_cache(last, "item", "entries"), _cache(last, "query", "entries")),
                "evicted": (_evicted(soak, group, "item"), _evicted(soak, group, "query")),
                "rps": requests / max(1e-9, last["t_s"] - start),
                "latency": {c: latency_figures(v) for c, v in merged.items()},
                "errors": sum(p["error_count"] for p in points),
                "rejected": len(merged.get("rejected", [])),
                "malloc": last.get("malloc"),
            }
        )
    return out


def _evicted(soak: Soak, group: range, name: str) -> int:
    def size(index: int) -> int:
        if index < 0:
            return 0
        return int((_cache(soak.points[index], name, "evictions") or {}).get("size", 0))

    return size(group.stop - 1) - size(group.start - 1)


def _pair(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    return f"{_ms(figures['p50_us'])} / {_ms(figures['p99_us'])}"


def markdown(document: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    s, v, m = document["settings"], document["verdict"], document["machine"]
    space = s["key_space"]
    lines = [
        "# daxproxy soak: memory and latency over time",
        "",
        f"{document['date']}, {m['cores']} cores of {m['cpu']} ({m['os']}), Python "
        f"{m['python']}, aiohttp {m['aiohttp']}, daxproxy {m['daxproxy']} at "
        f"{m['daxproxy_revision']}, upstream {m['upstream']}.",
        "",
        f"Item cache budget {_mib(s['item_cache_bytes'])} MiB, query cache "
        f"{_mib(s['query_cache_bytes'])} MiB; key space {space['items']:,} items "
        f"(~{_mib(space['item_bytes_estimate'])} MiB) and {space['query_pages']:,} Query pages "
        f"of {PAGE_ITEMS} items (~{_mib(space['page_bytes_estimate'])} MiB), "
        f"{space['item_sizes']}; {s['duration_s']:g} s at {s['rate']:g} req/s over "
        f"{s['concurrency']} connections, Zipf {s['skew']:g}, sampled every "
        f"{s['interval_s']:g} s. Mix: "
        + ", ".join(f"{name} {share:.0%}" for name, share in MIX)
        + "."
        + "".join(f" Proxy environment: {k}={v}." for k, v in s["proxy_env"].items()),
        "",
        f"## Verdict: {'PASS' if v['ok'] else 'FAIL'}",
        "",
        f"- idle RSS (caches empty) {v['idle_rss_mib']} MiB; peak {v['peak_rss_mib']} MiB "
        f"({v['peak_over_idle_mib']} MiB over idle, {v['peak_over_budgets_mib']} MiB over the "
        f"budgets' {v['budgets_mib']} MiB); bound: budgets + {s['overhead_mib']:g} MiB = "
        f"{v['bound_mib']} MiB",
        f"- levelling off: the last third's peak {v['last_third_peak_mib']} MiB against the "
        f"middle third's {v['middle_third_peak_mib']} MiB, +{v['last_third_growth_mib']} MiB "
        f"(allowed: under {v['growth_allowed_mib']} MiB)",
        "- caches full (at 90 % of budget) at: "
        + ", ".join(
            f"{name} {c['full_at_s']} s ({c['size_evictions']:,} size evictions in all)"
            for name, c in v["caches"].items()
        ),
        f"- requests {v['requests']:,}, unexpected errors {v['errors']:,}",
        *(f"- **{reason}**" for reason in v["reasons"]),
        *(
            [
                "- under --tracemalloc the RSS checks are not enforced: each snapshot costs the "
                "proxy RSS of its own; compare the traced MiB below"
            ]
            if s["tracemalloc"]
            else []
        ),
        "",
        *trace_lines(document.get("tracemalloc")),
        "## Over time",
        "",
        "| t (s) | RSS MiB | item cache MiB | query cache MiB | entries item / query | "
        "size evictions item / query | req/s | hit p50 / p99 ms | miss p50 / p99 ms | "
        "write p50 / p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        entries = " / ".join("-" if e is None else f"{e:,}" for e in r["entries"])
        evicted = " / ".join(f"{e:,}" for e in r["evicted"])
        lines.append(
            f"| {round(r['t_s'], 1):g} | {r['rss_mib']} | {r['item_mib']} | {r['query_mib']} | "
            f"{entries} | {evicted} | {r['rps']:,.0f} | {_pair(r['latency'].get('hit'))} | "
            f"{_pair(r['latency'].get('miss'))} | {_pair(r['latency'].get('write'))} | "
            f"{r['errors']} |"
        )
    if any(r["malloc"] for r in rows):
        lines += [
            "",
            "## glibc malloc in the proxy (--malloc-stats)",
            "",
            "| t (s) | RSS MiB | heap in use MiB | heap free MiB | mmap MiB | traced MiB |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {round(r['t_s'], 1):g} | {r['rss_mib']} | {m.get('heap_used_mib')} | "
            f"{m.get('heap_free_mib')} | {m.get('mmap_mib')} | {m.get('traced_mib') or '-'} |"
            for r in rows
            if (m := r["malloc"] or {})
        ]
    lines += [
        "",
        "Each row ends at *t*: RSS and the caches as sampled then; requests/s, latency and "
        "errors over the intervals since the row before (the requests meant to fail are not "
        "errors). Files: " + ", ".join(document["files"]) + ".",
        "",
    ]
    return "\n".join(lines)


def draw(document: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.plots import DPI, MINOR, PLAIN

    points, s, v = document["points"], document["settings"], document["verdict"]
    times = [p["t_s"] for p in points]
    figure, (memory, latency) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    item = [(_cache(p, "item") or 0) / MIB for p in points]
    query = [(_cache(p, "query") or 0) / MIB for p in points]
    idle = v["idle_rss_mib"]
    rss = [p["rss_mib"] for p in points]
    memory.plot([0.0, *times], [idle, *rss], color="#dd8452", label="proxy RSS (0: idle)")
    memory.plot(times, [a + b for a, b in zip(item, query, strict=True)], label="cache bytes")
    memory.plot(times, item, linestyle=":", label="item cache bytes")
    memory.plot(times, query, linestyle=":", label="query cache bytes")
    budgets = v["budgets_mib"]
    memory.axhline(budgets, color="#555555", linestyle="--", label=f"budgets ({budgets} MiB)")
    memory.axhline(
        v["bound_mib"],
        color="#c44e52",
        linestyle="--",
        label=f"budgets + {s['overhead_mib']:g} MiB overhead",
    )
    if idle:
        memory.axhline(idle, color="#999999", linestyle=":", label="idle RSS")
    if any(p.get("malloc") for p in points):
        for key, label in (("heap_used_mib", "malloc: in use"), ("heap_free_mib", "malloc: free")):
            values = [(p.get("malloc") or {}).get(key) or math.nan for p in points]
            memory.plot(times, values, linestyle="-.", label=label)
    memory.set_ylabel("MiB")
    memory.set_ylim(bottom=0)
    memory.grid(alpha=0.3)
    memory.legend(fontsize=8, loc="lower right")
    memory.set_title("Resident memory and cache bytes", fontsize=10)
    for klass, colour in (("hit", "#55a868"), ("miss", "#4c72b0"), ("write", "#8172b2")):
        for key, style in (("p50_us", "-"), ("p99_us", "--")):
            values = [
                (p["latency"].get(klass) or {}).get(key, math.nan) / 1000 or math.nan
                for p in points
            ]
            latency.plot(times, values, style, color=colour, label=f"{klass} {key[:3]}")
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(PLAIN)
    latency.yaxis.set_minor_formatter(MINOR)
    latency.tick_params(axis="y", which="minor", labelsize=7)
    latency.set_ylabel("ms (log)")
    latency.set_xlabel("seconds of load")
    latency.grid(alpha=0.3, which="both")
    latency.legend(fontsize=8, ncol=3)
    latency.set_title(f"Latency per {s['interval_s']:g} s interval", fontsize=10)
    figure.tight_layout()
    path = out / PLOT_NAME
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    add("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    add("--upstream", default="auto", help="auto (default), dynalite, moto, or a URL")
    add("--item-cache-mib", type=float, default=32.0, help="item cache budget (default 32)")
    add("--query-cache-mib", type=float, default=8.0, help="query cache budget (default 8)")
    add(
        "--key-space-factor",
        type=float,
        default=3.0,
        help="each table's item bytes as a multiple of its cache's budget (default 3)",
    )
    add("--rate", type=float, default=300.0, help="requests/s, steady; 0: unpaced (default 300)")
    add("--concurrency", type=int, default=16, help="keep-alive connections (default 16)")
    add("--skew", type=float, default=0.9, help="Zipf exponent of keys and pages (default 0.9)")
    add(
        "--overhead-mib",
        type=float,
        default=DEFAULT_OVERHEAD_MIB,
        help=f"RSS allowed beyond the two budgets (default {DEFAULT_OVERHEAD_MIB:g})",
    )
    add("--seed", type=int, default=20261129, help="seeds the sizes and the request stream")
    add("--out", type=Path, default=DEFAULT_OUT, help="where soak.md, soak.json, soak.png go")
    add("--no-plots", action="store_true", help="skip the PNG")
    add(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the proxy (repeatable), e.g. "
        "MALLOC_MMAP_THRESHOLD_=32768",
    )
    add(
        "--malloc-stats",
        action="store_true",
        help="debugging: sample glibc's malloc statistics in the proxy (heap in use, free, "
        "mmap) with every sample, to tell a leak from the allocator's slack",
    )
    add(
        "--tracemalloc",
        action="store_true",
        help="debugging: --malloc-stats, the proxy under tracemalloc, and where its memory "
        "grew (snapshots when idle, after a third, two thirds and the whole run; slows it)",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.interval <= 0 or args.concurrency < 1:
        parser.error("--duration, --interval and --concurrency must be positive")
    if args.item_cache_mib <= 0 or args.query_cache_mib <= 0 or args.key_space_factor <= 0:
        parser.error("the budgets and --key-space-factor must be positive")
    if args.rate < 0 or args.skew < 0 or args.overhead_mib < 0:
        parser.error("--rate, --skew and --overhead-mib cannot be negative")
    pairs = [value.partition("=") for value in args.proxy_env]
    if any(not name or not sep for name, sep, _ in pairs):
        parser.error("--proxy-env takes NAME=VALUE")
    args.proxy_env = {name: value for name, _, value in pairs}
    return args


def settings_of(args: argparse.Namespace, space: KeySpace) -> dict[str, Any]:
    return {
        "duration_s": args.duration,
        "interval_s": args.interval,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "skew": args.skew,
        "item_cache_bytes": round(args.item_cache_mib * MIB),
        "query_cache_bytes": round(args.query_cache_mib * MIB),
        "overhead_mib": args.overhead_mib,
        "key_space_factor": args.key_space_factor,
        "key_space": space.describe(),
        "mix": dict(MIX),
        "seed": args.seed,
        "tracemalloc": args.tracemalloc,
        "malloc_stats": args.malloc_stats or args.tracemalloc,
        "proxy_env": args.proxy_env,
        "checks": {
            "flat_mib": FLAT_MIB,
            "flat_share": FLAT_SHARE,
            "full_share": FULL_SHARE,
            "error_share": ERROR_SHARE,
        },
    }


def soak(args: argparse.Namespace, progress: Progress, work_dir: Path) -> int:
    item_bytes, query_bytes = round(args.item_cache_mib * MIB), round(args.query_cache_mib * MIB)
    space = KeySpace.for_budgets(item_bytes, query_bytes, args.key_space_factor, args.seed)
    settings = settings_of(args, space)
    kind = targets.choose_upstream(args.upstream)
    progress.step(f"starting the upstream: {kind}")
    others = machine.OtherWork()
    upstream = targets.start_upstream(kind, work_dir)
    try:
        progress.step(f"seeding {space.items:,} items and {space.pages:,} pages")
        started = time.monotonic()
        written = seed_tables(upstream.url, space)
        progress.say(f"  seeded {written:,} items in {time.monotonic() - started:.1f} s")
        progress.step("starting daxproxy")
        options = [f"--item-cache-max-bytes={item_bytes}", f"--query-cache-max-bytes={query_bytes}"]
        proxy, debug_dir = start_soak_proxy(
            upstream.url,
            work_dir,
            options,
            debug=args.malloc_stats,
            trace=args.tracemalloc,
            env=args.proxy_env,
        )
        try:
            run = Soak(settings, proxy.url, proxy.pid, upstream.pid, progress, debug_dir=debug_dir)
            if args.tracemalloc:
                count = max(1, math.ceil(args.duration / args.interval))
                run.trace_at = frozenset({max(1, count // 3), max(1, 2 * count // 3), count})
            time.sleep(1.0)  # settled after start-up
            baseline = run.baseline()
            progress.say(f"  idle daxproxy: RSS {baseline['rss_mib']} MiB")
            load = SoakLoad(
                proxy.url, Mix(space, args.skew, args.seed), args.concurrency, args.rate
            )
            asyncio.run(drive(run, load, args.duration, args.interval))
            if args.tracemalloc:
                progress.say("  reading the tracemalloc snapshots")
            traced = trace_report(run)
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    busy = others.busy_fraction()
    return publish(
        run,
        baseline=baseline,
        upstream=upstream,
        args=args,
        busy=busy,
        progress=progress,
        traced=traced,
    )


def publish(
    soak: Soak,
    *,
    baseline: dict[str, Any],
    upstream: targets.Server,
    args: argparse.Namespace,
    busy: float | None,
    progress: Progress,
    traced: dict[str, Any] | None,
) -> int:
    progress.step("writing the report")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    described = describe_machine(upstream, wrk=False)
    described["load_generator"] = "bench.soak (bench.httpload's client, in process)"
    described["cpu_busy_others_during"] = busy
    files = [MARKDOWN_NAME, JSON_NAME] + ([] if args.no_plots else [PLOT_NAME])
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": soak.settings,
        "machine": described,
        "baseline": baseline,
        "verdict": verdict(soak.points, baseline, soak.settings),
        "files": files,
        "points": soak.points,
    }
    if traced is not None:
        document["tracemalloc"] = traced
    rows = table_rows(soak)
    document["table"] = rows
    if not args.no_plots:
        draw(document, out)
    (out / JSON_NAME).write_text(json.dumps(document, indent=2) + "\n")
    text = markdown(document, rows)
    (out / MARKDOWN_NAME).write_text(text)
    progress.close()
    sys.stdout.write(text)
    sys.stdout.flush()
    print(f"wrote {', '.join(files)} to {out}", file=sys.stderr)
    for reason in document["verdict"]["reasons"]:
        print(f"soak failed: {reason}", file=sys.stderr)
    return 0 if document["verdict"]["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.pop("AWS_PROFILE", None)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    samples = max(1, math.ceil(args.duration / args.interval))
    progress = Progress(samples + 4)
    try:
        with tempfile.TemporaryDirectory(prefix="daxproxy-soak-") as work_dir:
            return soak(args, progress, Path(work_dir))
    except KeyboardInterrupt:
        progress.close()
        print("interrupted: every process the soak started has been stopped", file=sys.stderr)
        return 130
    except (processes.StartError, dataset.DataError, OSError) as exc:
        progress.close()
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
