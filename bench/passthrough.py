"""The pass-through and cache-hit benchmark with wrk: ``python -m bench.passthrough [options]``.

Contract: in one run, with one load generator and the same settings, it measures each chosen
target in turn. Pass-through, GetItem with the item cache off: ``direct`` (moto's server,
which the harness starts and seeds), ``proxy`` (``python -m daxproxy`` in front of that
moto), ``constant`` (:mod:`bench.constant_server`, the ceiling for any aiohttp server here)
and ``proxy-constant`` (daxproxy in front of the constant server: the proxy's own ceiling).
Cache hits, the caches on and warmed so that every measured answer comes from memory:
``proxy-hit`` (GetItem), ``proxy-batch100-hit`` (BatchGetItem of 100 keys) and
``proxy-query-hit`` (a Query whose page is 10 items, from the query cache), each with its own
daxproxy in front of the same moto. Every target is measured at ``--connections``,
then again at ``--latency-connections`` (default 1), where nothing queues. Each measurement
is preceded by one request whose answer must be exactly right (for the hit targets: equal to
moto's and labelled ``x-daxproxy-cache: hit``, checked once more after the last measurement),
and by a warm-up. It prints a Markdown report to stdout (progress goes to stderr), writes
JSON with ``--json``, and stops every process it started on the way out, Ctrl-C, SIGTERM and
errors included.
Exit code: 0; 1 when a target failed or any request errored; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import loadgen, machine, processes, report, workload
from bench.loadgen import Load, LoadError
from bench.report import Result
from bench.workload import BATCH_GET, GET_ITEM, QUERY, Request
from daxproxy.service.embedded import EmbeddedBackendError

TARGETS = report.TARGETS
MOTO_TARGETS = ("direct", "proxy", *report.CACHE_HITS)
HIT_REQUESTS = {"proxy-hit": GET_ITEM, "proxy-batch100-hit": BATCH_GET, "proxy-query-hit": QUERY}
# Fourteen measurements (seven targets, two connection counts) in about two minutes.
DEFAULT_DURATION_S, DEFAULT_WARMUP_S = 5, 2
QUICK_DURATION_S, QUICK_WARMUP_S = 3, 1
GENERATORS = ("auto", loadgen.WRK, loadgen.PYTHON)
# Above this fraction of the CPUs busy with other work, the numbers are not worth much.
BUSY_WARNING = 0.15
# How busy the CPUs were: before the run, and with other processes during it.
Busy = tuple[float | None, float | None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What every measurement of a run shares."""

    args: argparse.Namespace
    generator: str
    work_dir: Path
    proxy_options: tuple[str, ...]  # pass-through: the caches off
    cache_options: tuple[str, ...]  # the hit targets: the caches on

    @property
    def connection_counts(self) -> list[int]:
        return connection_counts(self.args)


def _targets(values: list[str]) -> list[str]:
    chosen = {t.strip() for v in values for t in v.split(",") if t.strip()}
    unknown = chosen - set(TARGETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target(s) {sorted(unknown)}; use {TARGETS}")
    return [t for t in TARGETS if t in chosen]  # always in the documented order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.passthrough",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=int, help=f"seconds measured per target (default {DEFAULT_DURATION_S})")
    add("--warmup", type=int, help=f"seconds of warm-up per target (default {DEFAULT_WARMUP_S})")
    add("--connections", type=int, default=32, help="concurrent connections (default 32)")
    add(
        "--latency-connections",
        type=int,
        default=1,
        help="connections for a second pass over every target, where nothing queues, that "
        "gives the added p50 latency (default 1; 0 skips the pass)",
    )
    add("--threads", type=int, default=1, help="wrk threads (default 1: see bench/README.md)")
    add(
        "--targets",
        nargs="+",
        default=list(TARGETS),
        metavar="TARGET",
        help=f"a subset of {', '.join(TARGETS)} (space- or comma-separated; default all)",
    )
    add("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    add(
        "--quick",
        action="store_true",
        help=f"{QUICK_DURATION_S} s per target after {QUICK_WARMUP_S} s of warm-up (a smoke run)",
    )
    add(
        "--loadgen",
        choices=GENERATORS,
        default="auto",
        help="auto (default): wrk if it is installed, else the Python fallback",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.targets = _targets(args.targets)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S
    if args.warmup is None:
        args.warmup = QUICK_WARMUP_S if args.quick else DEFAULT_WARMUP_S
    if args.duration < 1 or args.connections < 1:
        parser.error("--duration and --connections must be at least 1")
    if args.warmup < 0 or args.latency_connections < 0:
        parser.error("--warmup and --latency-connections cannot be negative")
    if not 1 <= args.threads <= args.connections:
        parser.error("--threads must be from 1 to --connections")
    return args


def connection_counts(args: argparse.Namespace) -> list[int]:
    """The main count, then the latency count when it is another one."""
    counts = [args.connections]
    if args.latency_connections and args.latency_connections != args.connections:
        counts.append(args.latency_connections)
    return counts


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Expect:
    """What a target must answer: the request's items, equal to ``reference`` (moto's own
    answer) when given, and labelled ``cache`` (``x-daxproxy-cache``) when given."""

    request: Request = GET_ITEM
    cache: str | None = None
    reference: bytes | None = None

    def check(self, url: str) -> bytes:
        return workload.check_answer(url, self.request, cache=self.cache, expected=self.reference)


def measure_target(
    plan: Plan, target: str, url: str, connections: int, expect: Expect = Expect()
) -> Result:
    """Check one answer, warm up, then the measured run."""
    expect.check(url)
    args = plan.args
    load = Load(connections, min(args.threads, connections))
    name = f"{target} at {connections} connection(s)"
    if args.warmup:
        say(f"{name}: warming up for {args.warmup} s")
        loadgen.measure(plan.generator, url, args.warmup, load, expect.request)
    say(f"{name}: measuring for {args.duration} s")
    m = loadgen.measure(plan.generator, url, args.duration, load, expect.request)
    say(f"{name}: {m.rps:,.0f} requests/s, p50 {m.p50_us / 1000:.2f} ms, {m.error_count} errors")
    return Result(target, connections, m)


def measure_server(plan: Plan, target: str, url: str, expect: Expect = Expect()) -> list[Result]:
    return [measure_target(plan, target, url, n, expect) for n in plan.connection_counts]


@contextlib.contextmanager
def running(child: processes.Child) -> Iterator[processes.Child]:
    try:
        yield child
    finally:
        child.stop()


def measure_via_proxy(plan: Plan, target: str, upstream_url: str) -> list[Result]:
    say(f"starting daxproxy in front of {upstream_url}")
    proxy = processes.start_proxy(upstream_url, plan.work_dir, plan.proxy_options)
    with running(proxy):
        return measure_server(plan, target, proxy.url)


def measure_hits(plan: Plan, target: str, moto_url: str, reference: bytes) -> list[Result]:
    """A daxproxy of its own with the caches on; the first answer fills the cache (a miss),
    and from then on every answer must be a hit equal to moto's, to the end."""
    request = HIT_REQUESTS[target]
    say(f"starting daxproxy with its caches in front of {moto_url}, for {target}")
    name = "daxproxy-" + target.removeprefix("proxy-")
    proxy = processes.start_proxy(moto_url, plan.work_dir, plan.cache_options, name)
    with running(proxy):
        Expect(request, "miss", reference).check(proxy.url)
        hit = Expect(request, "hit", reference)
        results = measure_server(plan, target, proxy.url, hit)
        hit.check(proxy.url)
        return results


def measure_moto_targets(plan: Plan) -> tuple[list[Result], Path]:
    """The targets in front of one seeded moto; and moto's GetItem answer, saved to a file."""
    say("starting moto's server and seeding the table")
    targets = plan.args.targets
    moto = processes.start_moto()
    try:
        workload.seed(moto.url)
        body_file = plan.work_dir / "getitem-response.json"
        references = {GET_ITEM.name: workload.check_answer(moto.url)}
        body_file.write_bytes(references[GET_ITEM.name])
        for target in report.CACHE_HITS:
            request = HIT_REQUESTS[target]
            if target in targets and request.name not in references:
                references[request.name] = workload.check_answer(moto.url, request)
        results = []
        if "direct" in targets:
            results += measure_server(plan, "direct", moto.url)
        if "proxy" in targets:
            results += measure_via_proxy(plan, "proxy", moto.url)
        for target in report.CACHE_HITS:
            if target in targets:
                reference = references[HIT_REQUESTS[target].name]
                results += measure_hits(plan, target, moto.url, reference)
        return results, body_file
    finally:
        moto.stop()


def measure_constant_targets(plan: Plan, body_file: Path | None) -> list[Result]:
    """constant and proxy-constant, against one constant server sending moto's bytes."""
    say("starting the constant server")
    results = []
    with running(processes.start_constant(plan.work_dir, body_file)) as constant:
        if "constant" in plan.args.targets:
            results += measure_server(plan, "constant", constant.url)
        if "proxy-constant" in plan.args.targets:
            results += measure_via_proxy(plan, "proxy-constant", constant.url)
    return results


def measure_all(plan: Plan) -> list[Result]:
    targets = set(plan.args.targets)
    results: list[Result] = []
    body_file = None
    if targets & set(MOTO_TARGETS):
        results, body_file = measure_moto_targets(plan)
    if targets & {"constant", "proxy-constant"}:
        results += measure_constant_targets(plan, body_file)
    # The main connection count first, then the latency pass; targets in their order.
    main = plan.args.connections
    return sorted(results, key=lambda r: (r.connections != main, TARGETS.index(r.target)))


def check_quiet() -> float | None:
    """How busy the CPUs are before the run; a warning when something else is using them."""
    busy = machine.cpu_busy(1.0)
    if busy is not None and busy > BUSY_WARNING:
        say(
            f"WARNING: the CPUs are already {busy:.0%} busy before the benchmark starts; "
            "its numbers will be low and noisy. Stop the other work and run it again."
        )
    return busy


def warn_if_busy(others: float | None) -> None:
    if others is not None and others > BUSY_WARNING:
        say(
            f"WARNING: other processes kept {others:.0%} of the CPUs busy during the run; "
            "its numbers are low and noisy. Run it again on a quiet machine."
        )


def run_settings(plan: Plan, busy: Busy) -> report.RunSettings:
    args = plan.args
    counts = plan.connection_counts
    return report.RunSettings(
        date=datetime.date.today().isoformat(),
        generator=plan.generator,
        duration_s=args.duration,
        warmup_s=args.warmup,
        connections=args.connections,
        latency_connections=counts[-1] if len(counts) > 1 else 0,
        threads=args.threads if plan.generator == loadgen.WRK else 1,
        proxy_options=" ".join(plan.proxy_options),
        cache_options=" ".join(plan.cache_options),
        cpu_busy_before=busy[0],
        cpu_busy_others_during=busy[1],
    )


def generator_version(generator: str) -> str:
    if generator == loadgen.WRK:
        return loadgen.wrk_version()
    return "bench.pyload (the Python fallback)"


def publish(plan: Plan, busy: Busy, results: list[Result]) -> None:
    description = machine.describe(generator_version(plan.generator))
    settings = run_settings(plan, busy)
    print(report.markdown(description, settings, results), end="", flush=True)
    path = plan.args.json
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = report.as_json(description, settings, results)
        path.write_text(json.dumps(data, indent=2) + "\n")
        say(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Everything here talks to local servers with dummy keys: a profile named in the
    # environment (and perhaps missing from this machine) must not be looked up.
    os.environ.pop("AWS_PROFILE", None)
    # SIGTERM unwinds like Ctrl-C, so every finally clause stops its process.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        generator = loadgen.choose(args.loadgen)
        if generator == loadgen.PYTHON:
            say(loadgen.python_warning(args.loadgen, os.cpu_count()))
        proxied = bool({"proxy", "proxy-constant"} & set(args.targets))
        hits = bool(set(report.CACHE_HITS) & set(args.targets))
        options = processes.proxy_options(hits) if proxied or hits else ((), ())
        pass_through = options[0] if proxied else ()
        busy = check_quiet()
        with tempfile.TemporaryDirectory(prefix="daxproxy-bench-") as work_dir:
            plan = Plan(args, generator, Path(work_dir), pass_through, options[1])
            others = machine.OtherWork()
            results = measure_all(plan)
            busy_during = others.busy_fraction()
            warn_if_busy(busy_during)
            publish(plan, (busy, busy_during), results)
    except KeyboardInterrupt:
        say("interrupted: every process the benchmark started has been stopped")
        return 130
    except (LoadError, processes.StartError, EmbeddedBackendError, workload.BadAnswer) as exc:
        say(f"benchmark failed: {exc}")
        return 1
    return 1 if any(r.measurement.error_count for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
