"""The soak's proxy and its sampler: memory, CPU, caches and latency over time.

Contract: :func:`start_soak_proxy` starts daxproxy (under a small launcher with
``--malloc-stats`` or ``--tracemalloc``, which reports glibc's malloc statistics on SIGUSR1
and dumps a tracemalloc snapshot on SIGUSR2). :class:`Soak` holds a run: :meth:`Soak.baseline`
measures the idle proxy, :meth:`Soak.sample` one point (RSS, CPU share, ``GET /metrics``'s
cache bytes, entries and evictions via :func:`read_metrics`, the interval's latency per
outcome, requests/s and errors, and malloc figures when launched so). :func:`drive` runs the
load for a duration while sampling at an interval; :func:`trace_report` compares the
tracemalloc snapshots by source line. :func:`mib`, :func:`cache_figure` and :func:`ms_text`
are the small formatters the report shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import httpload, measure, processes
from bench.progress import Progress
from bench.soak_load import SoakLoad

MIB = 1024 * 1024
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


def mib(value: float | None) -> float | None:
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
        idle = {"rss_bytes": rss, "rss_mib": mib(rss), "metrics": read_metrics(self.url)}
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
                        "heap_used_mib": mib(malloc.get("uordblks")),
                        "heap_free_mib": mib(malloc.get("fordblks")),
                        "mmap_mib": mib(malloc.get("hblkhd")),
                        "traced_mib": mib(facts["traced"]),
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
            "rss_mib": mib(rss),
            "upstream_rss_mib": mib(measure.rss_bytes(self.upstream_pid)),
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


def cache_figure(point: dict[str, Any], name: str, key: str = "bytes") -> Any:
    return (((point.get("metrics") or {}).get("caches") or {}).get(name) or {}).get(key)


def progress_text(point: dict[str, Any], budgets: tuple[int, int]) -> str:
    item, query = cache_figure(point, "item"), cache_figure(point, "query")
    hit = (point["latency"].get("hit") or {}).get("p99_us")
    miss = (point["latency"].get("miss") or {}).get("p99_us")
    return (
        f"t={point['t_s']:.0f} s: RSS {point['rss_mib']} MiB, item cache "
        f"{mib(item)}/{mib(budgets[0])} MiB, query cache {mib(query)}/{mib(budgets[1])} "
        f"MiB, {point['rps']:.0f} req/s, p99 hit {ms_text(hit)} miss {ms_text(miss)} ms, "
        f"{point['error_count']} errors"
    )


def ms_text(value: float | None) -> str:
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
