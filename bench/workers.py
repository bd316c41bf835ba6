"""Hit throughput at 1 and N workers, and the cross-worker lag: ``python -m bench.workers``.

Contract: starts one upstream (``--upstream``, as :mod:`bench.run`: dynalite when installed,
else moto), seeds read-zipf's table, and for each ``--workers`` count starts ``daxproxy
--workers N`` in front of it (defaults plus ``--admin``), waits until all N serve, reads
every item twice on fresh connections (which land on either worker), and measures
read-zipf with :func:`bench.measure.measure` (wrk when installed, else httpload), the
supervisor and every worker pinned to the servers' cores and the generator to its own,
as :mod:`bench.run` pins them (``--pin``). Then, through the largest count, unpinned, it
sends ``--writes`` PutItems one after another on fresh connections and reads
``daxproxy_change_lag_seconds`` (from a worker's publication of a change to another
worker's application of it): its count and its p50 and p99, interpolated within the
buckets as Prometheus' ``histogram_quantile`` does (so they are as fine as the buckets,
10 us at the bottom). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench import dataset, loadgen, measure, processes, targets, workloads
from bench.workloads import CATALOGUE, Workload

LAG = "daxproxy_change_lag_seconds"


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's children: its workers (and the embedded moto, which it has none of
    here: the bench gives an upstream)."""
    try:
        text = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def scrape(url: str) -> str:
    body = measure._get(url, "/metrics")
    return "" if body is None else body.decode()


def serving(url: str) -> float:
    for family in text_string_to_metric_families(scrape(url)):
        for sample in family.samples:
            if sample.name == "daxproxy_workers":
                return sample.value
    return 1.0  # one process: no supervisor, no gauge


def start(upstream: str, work_dir: Path, workers: int) -> processes.Child:
    options = ("--admin", "--workers", str(workers))
    child = processes.start_proxy(upstream, work_dir, options, f"daxproxy-{workers}w")
    deadline = time.monotonic() + 60
    while serving(child.url) < workers:
        if time.monotonic() > deadline:
            child.stop()
            raise processes.StartError(f"{workers} workers did not all serve within 60 s")
        time.sleep(0.1)
    return child


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile``: ``buckets`` are (upper bound, cumulative count), ascending."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def lag(url: str) -> tuple[int, float | None, float | None]:
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(scrape(url)):
        if family.name == LAG:
            buckets = sorted(
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name == f"{LAG}_bucket"
            )
    count = int(buckets[-1][1]) if buckets else 0
    return count, quantile(0.5, buckets), quantile(0.99, buckets)


def write_load(url: str, workload: Workload, writes: int) -> None:
    """PutItems of the workload's items, each on a fresh connection (either worker)."""
    for n in range(writes):
        item = workloads.item(n % workload.keys, workload.item_bytes, version=n + 2)
        body = json.dumps({"TableName": workload.table, "Item": item})
        status, answer = dataset.post(url, "PutItem", body)
        if status != 200:
            raise dataset.DataError(f"PutItem answered {status}: {answer[:200]!r}")


def row(count: int, sample: measure.Sample) -> str:
    every = sample["latency"]["all"]
    hits = sample["hit_ratio"]
    return (
        f"| {count} | {sample['rps']:,.0f} | {every.get('p50_us', 0) / 1000:.2f} | "
        f"{every.get('p99_us', 0) / 1000:.2f} | {'-' if hits is None else f'{hits:.3f}'} | "
        f"{sample['loadgen']['cpu_fraction']:.2f} |"
    )


def us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:.0f} us"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--upstream", default="auto")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--pin", choices=("auto", "off"), default="auto")
    args = parser.parse_args(argv)
    workload = CATALOGUE["read-zipf"].with_options(items=2000)
    generator = measure.WRK if loadgen.available() else measure.HTTPLOAD
    cores = loadgen.cpu_split() if args.pin == "auto" else None
    rows: list[str] = []
    lags: tuple[int, float | None, float | None] = (0, None, None)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as work:
        work_dir = Path(work)
        upstream = targets.start_upstream(targets.choose_upstream(args.upstream), work_dir)
        try:
            dataset.seed(upstream.url, workload, set())
            for count in args.workers:
                proxy = start(upstream.url, work_dir, count)
                try:
                    for _ in range(2):
                        dataset.warm(proxy.url, workload)
                    pids: dict[str, int | None] = {"server": proxy.pid}
                    children = worker_pids(proxy.pid) if proxy.pid and count > 1 else []
                    for n, pid in enumerate(children):
                        pids[f"worker{n + 1}"] = pid
                    sample = measure.measure(
                        proxy.url,
                        workload,
                        target="proxy",
                        connections=args.connections,
                        duration=args.duration,
                        warmup=args.warmup,
                        pids=pids,
                        log_dir=work_dir,
                        proxy_url=proxy.url,
                        generator=generator,
                        cores=cores,
                    )
                    rows.append(row(count, sample))
                    if count == max(args.workers) and count > 1:
                        for pid in pids.values():  # the lag on every core, not the pinned one
                            loadgen.pin(pid, os.sched_getaffinity(0))
                        write_load(proxy.url, workload, args.writes)
                        lags = lag(proxy.url)
                finally:
                    proxy.stop()
        finally:
            upstream.stop()
    pinned = "not pinned"
    if cores is not None:
        pinned = f"servers on cores {sorted(cores[0])}, generator on {sorted(cores[1])}"
    print(f"read-zipf GetItem hits, {args.connections} connections, {generator}, {pinned}")
    print("| workers | requests/s | p50 ms | p99 ms | hit ratio | generator CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if max(args.workers) > 1:
        applied, p50, p99 = lags
        print(
            f"\ncross-worker lag over {args.writes} PutItems ({applied} changes applied): "
            f"p50 {us(p50)}, p99 {us(p99)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
