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

This module is the command line and the run's order; the parts are :mod:`bench.soak_load`
(key space, seeding, the mix and its paced client), :mod:`bench.soak_sampler` (the proxy,
its launcher and the sampler) and :mod:`bench.soak_report` (the verdict, tables, Markdown and
plot).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import dataset, machine, processes, targets
from bench.progress import Progress
from bench.run import DEFAULT_OUT, describe_machine
from bench.soak_load import (
    MIX,
    KeySpace,
    Mix,
    SoakLoad,
    seed_tables,
)
from bench.soak_report import (
    DEFAULT_OVERHEAD_MIB,
    ERROR_SHARE,
    FLAT_MIB,
    FLAT_SHARE,
    FULL_SHARE,
    JSON_NAME,
    MARKDOWN_NAME,
    PLOT_NAME,
    draw,
    markdown,
    table_rows,
    verdict,
)
from bench.soak_sampler import (
    MIB,
    Soak,
    drive,
    start_soak_proxy,
    trace_report,
)

SCHEMA = "daxproxy-soak/1"


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
