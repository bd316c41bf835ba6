"""DAX-protocol GetItem hits against HTTP hits on the same core: ``python -m bench.dax``.

Contract: starts one upstream (``--upstream``, as :mod:`bench.run`: dynalite when installed,
else moto), seeds read-zipf's table (``--items`` keys of 1 KB items), starts one daxproxy in
front of it at its defaults (plus ``--admin``, for the CPU and cache counts) and reads every
item through it once. For each ``--connections`` count it measures GetItem hits through it
three ways, each for ``--warmup`` + ``--duration`` seconds on the same keys in the same
order: HTTP through :mod:`bench.replay`, DAX through :mod:`bench.replay`, and HTTP through
wrk (:func:`bench.measure.measure`, the bench's usual generator: a cross-check of replay's
HTTP figure; left out where wrk is missing). Servers and generator are pinned as
:mod:`bench.run` pins them (``--pin``): proxy and upstream on the servers' cores, the
generator on the last. Each row: requests/s, p50 and p99, the proxy's CPU per request in
µs (``/proc/<pid>/stat`` over the window), its cache hits over the window against the
requests (1.00: every one a hit), the generator and its CPU as a share of one core, and
errors. Then the generator check: replay's HTTP against the Protocol+httptools constant
server (``constant-fast``, answering the upstream's GetItem answer), which must reach
:data:`CHECK_RATIO` times the proxy's HTTP rate at the largest count, else replay may be
what sets the pace. Prints a Markdown table, the machine and how busy it was; exits 1 when
a row had errors or a server would not start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import dataset, loadgen, machine, measure, processes, targets
from bench.replay import DAX, HTTP, key_order
from bench.workloads import CATALOGUE, Workload, get_body

CHECK_RATIO = 1.5
_GRACE_S = 180.0  # warming every key twice, before the window, and winding down


def replay_sample(
    url: str,
    workload: Workload,
    protocol: str,
    *,
    target: str,
    connections: int,
    duration: float,
    warmup: float,
    pids: dict[str, int | None],
    log_dir: Path,
    proxy_url: str | None,
    cores: measure.Cores,
) -> measure.Sample:
    """One measurement with :mod:`bench.replay`, sampled as :func:`bench.measure.measure`
    samples its own generators."""
    if cores is not None:
        for pid in pids.values():
            loadgen.pin(pid, cores[0])
    command = [
        sys.executable,
        "-m",
        "bench.replay",
        f"--url={url}",
        f"--protocol={protocol}",
        f"--workload={json.dumps(workload.to_json())}",
        f"--connections={connections}",
        f"--duration={duration}",
        f"--warmup={warmup}",
    ]
    marks: dict[str, Any] = {}
    result = measure.run_generator(
        loadgen.pinned(command, None if cores is None else cores[1]),
        duration + warmup + _GRACE_S,
        marks,
        lambda _mark: measure._snapshot(pids, proxy_url),
        log_dir / f"replay-{protocol}-{target}-{connections}.log",
    )
    if set(marks) != {"start", "end"}:
        raise measure.MeasureError("bench.replay did not mark its measured window")
    rss = {role: measure.rss_bytes(pid) for role, pid in pids.items()}
    sample = measure.build_sample(
        workload, target, connections, result, marks=marks, rss=rss, is_proxy=proxy_url is not None
    )
    sample["verified"] = result.get("verified", 0)
    return sample


def hit_share(sample: measure.Sample) -> float | None:
    """The proxy's item-cache hits over the window per request counted (about 1: all hits;
    a little over, by the requests answered at the window's edges)."""
    hits = (sample.get("caches") or {}).get("item", {}).get("hits")
    return hits / sample["requests"] if hits is not None and sample["requests"] else None


def row(label: str, sample: measure.Sample) -> str:
    every = sample["latency"]["all"]
    per_1k = sample["cpu"].get("server", {}).get("seconds_per_1k")
    cpu_us = "-" if per_1k is None else f"{per_1k * 1000:.0f}"
    hits = hit_share(sample)
    generator = sample["loadgen"]
    return (
        f"| {label} | {sample['connections']} | {sample['rps']:,.0f} | "
        f"{every.get('p50_us', 0) / 1000:.2f} | {every.get('p99_us', 0) / 1000:.2f} | "
        f"{cpu_us} | {'-' if hits is None else f'{hits:.2f}'} | "
        f"{generator['generator']} {generator['cpu_fraction']:.2f} | {sample['error_count']} |"
    )


HEADER = (
    "| Path | Connections | Requests/s | p50 ms | p99 ms | Proxy CPU µs/req | Hits/req "
    "| Generator CPU | Errors |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.dax", description=__doc__)
    add = parser.add_argument
    add("--upstream", default="auto", help="auto (dynalite if installed), dynalite, moto, a URL")
    add("--connections", type=int, nargs="+", default=[1, 32])
    add("--duration", type=float, default=5.0, help="seconds measured per row")
    add("--warmup", type=float, default=1.0, help="seconds of load before each window")
    add("--items", type=int, default=CATALOGUE["read-zipf"].items, help="keys (1 KB items)")
    add("--pin", choices=("auto", "off"), default="auto")
    add("--no-wrk", action="store_true", help="leave out the wrk rows")
    add("--json", type=Path, help="also write every sample here")
    return parser


def proxy_rows(
    proxy: targets.Server,
    upstream: targets.Server,
    workload: Workload,
    *,
    args: argparse.Namespace,
    cores: measure.Cores,
    work_dir: Path,
) -> list[tuple[str, measure.Sample]]:
    """HTTP and DAX hits through replay, and HTTP hits through wrk, at each count."""
    pids = {"server": proxy.pid, "upstream": upstream.pid}
    common = {"duration": args.duration, "warmup": args.warmup, "log_dir": work_dir}
    rows = []
    for connections in args.connections:
        for protocol in (HTTP, DAX):
            sample = replay_sample(
                proxy.url,
                workload,
                protocol,
                target=f"proxy-{protocol}",
                connections=connections,
                pids=pids,
                proxy_url=proxy.url,
                cores=cores,
                **common,
            )
            rows.append((f"{protocol.upper()} hit (replay)", sample))
        if loadgen.available() and not args.no_wrk:
            sample = measure.measure(
                proxy.url,
                workload,
                target="proxy-http-wrk",
                connections=connections,
                pids=pids,
                proxy_url=proxy.url,
                generator=measure.WRK,
                cores=cores,
                **common,
            )
            rows.append(("HTTP hit (wrk)", sample))
    return rows


def generator_check(
    answer: bytes,
    workload: Workload,
    args: argparse.Namespace,
    cores: measure.Cores,
    work_dir: Path,
) -> measure.Sample:
    """Replay's HTTP against the Protocol+httptools constant server at the largest count."""
    constant = targets.start_constant(work_dir, answer, "constant-fast", targets.CONSTANT_FAST)
    try:
        return replay_sample(
            constant.url,
            workload,
            HTTP,
            target="constant-fast",
            connections=max(args.connections),
            duration=args.duration,
            warmup=args.warmup,
            pids={"server": constant.pid},
            log_dir=work_dir,
            proxy_url=None,
            cores=cores,
        )
    finally:
        constant.stop()


def run(
    args: argparse.Namespace, workload: Workload, cores: measure.Cores
) -> tuple[str, list[tuple[str, measure.Sample]], measure.Sample]:
    """The upstream's name, the proxy's rows and the generator check's sample."""
    with tempfile.TemporaryDirectory(prefix="bench-dax-") as work:
        work_dir = Path(work)
        upstream = targets.start_upstream(targets.choose_upstream(args.upstream), work_dir)
        try:
            if cores is not None:
                loadgen.pin(upstream.pid, cores[0])
            dataset.seed(upstream.url, workload, set())
            first = get_body(workload, key_order(workload, 1)[0])
            status, answer = dataset.post(upstream.url, *first)
            if status != 200:
                raise processes.StartError(f"the upstream answered GetItem with {status}")
            proxy = targets.start_proxy(upstream.url, work_dir)
            try:
                dataset.warm(proxy.url, workload)
                rows = proxy_rows(
                    proxy, upstream, workload, args=args, cores=cores, work_dir=work_dir
                )
            finally:
                proxy.stop()
            check = generator_check(answer, workload, args, cores, work_dir)
        finally:
            upstream.stop()
    return upstream.name, rows, check


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.pop("AWS_PROFILE", None)
    workload = CATALOGUE["read-zipf"].with_options(items=args.items)
    cores = loadgen.cpu_split() if args.pin == "auto" else None
    busy_before = machine.cpu_busy(0.5)
    others = machine.OtherWork()
    try:
        upstream, rows, check = run(args, workload, cores)
    except (processes.StartError, measure.MeasureError, loadgen.LoadError, dataset.DataError) as e:
        print(f"bench.dax: {e}", file=sys.stderr)
        return 1
    busy_during = others.busy_fraction()
    top = max(args.connections)
    proxy_http = next(
        s["rps"] for _, s in rows if s["target"] == "proxy-http" and s["connections"] == top
    )
    ratio = check["rps"] / proxy_http if proxy_http else 0.0
    pinned = "not pinned"
    if cores is not None:
        pinned = f"servers on cores {sorted(cores[0])}, generator on {sorted(cores[1])}"
    print(
        f"read-zipf GetItem hits ({workload.keys:,} keys of 1 KB, Zipf {workload.skew:g}), "
        f"{upstream} upstream, {args.duration:g} s per row after {args.warmup:g} s, {pinned}"
    )
    print(
        f"machine: {os.cpu_count()} cores, {machine.cpu_model()}, Python "
        f"{platform.python_version()}; CPUs busy before: {_share(busy_before)}, "
        f"by other processes during: {_share(busy_during)}\n"
    )
    print(HEADER)
    print("\n".join(row(label, sample) for label, sample in rows))
    print(row("HTTP, constant-fast (replay)", check))
    verdict = "passed" if ratio >= CHECK_RATIO else f"FAILED (under {CHECK_RATIO}x)"
    print(
        f"\nGenerator check: replay drove constant-fast at {check['rps']:,.0f}/s, "
        f"{ratio:.2f}x the proxy's HTTP hits at {top} connections: {verdict}"
    )
    samples = [sample for _, sample in rows] + [check]
    if args.json is not None:
        args.json.write_text(json.dumps({"samples": samples}, indent=1))
    return 1 if any(s["error_count"] for s in samples) else 0


if __name__ == "__main__":
    raise SystemExit(main())
