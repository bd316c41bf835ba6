"""The bench: ``python -m bench.run [--set quick|full] [options]`` (``make bench``, ``make
bench-full``).

Contract: in one run it starts one upstream (dynalite when installed, else moto, or a URL),
seeds each workload's table there, and measures every step of :func:`bench.plan.build` in
order, one server at a time: the upstream straight, a fresh daxproxy in front of it (its
caches warmed first unless the workload is a cold start; every cache off for the
``passthrough`` workload) and the constant servers answering the workload's own bytes (the
aiohttp one, and the Protocol+httptools one, the ceiling for any Python server), all with the
same load generator and settings: wrk with the workload's stream (:mod:`bench.loadgen`) when
it is installed, else :mod:`bench.httpload`, which also times hits, misses and writes apart
(the cold start always, and with wrk a second pass over each workload whose answers mix
outcomes). With two cores or more the servers and the generator run on separate cores. The
generator check: the generator must drive the Protocol+httptools constant server at
:data:`GENERATOR_MARGIN` times the proxy's hit rate or more, else a warning. It writes
``bench.md`` (also
printed on stdout), ``bench.json`` and PNG plots to ``--out`` (``bench/results/``,
git-ignored); progress and warnings go to stderr. Every process it starts is stopped on the
way out, on Ctrl-C, SIGTERM and errors too.
Exit code: 0; 1 when a server failed to start or answer, or any request errored; 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import (
    dataset,
    loadgen,
    machine,
    measure,
    plan,
    plots,
    processes,
    report,
    summary,
    targets,
)
from bench.plan import Settings, Step
from bench.progress import Progress
from bench.workloads import CATALOGUE, PAGES_PER_PARTITION

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# Above this fraction of the CPUs busy with other work, the numbers are not worth much.
BUSY_WARNING = 0.15
# The generator must reach this many times the proxy's hit rate against the fastest Python
# server (constant-fast), or it may be what caps the proxy's figure.
GENERATOR_MARGIN = 1.5


def _names(values: list[str], known: Collection[str], what: str) -> tuple[str, ...]:
    chosen = [v.strip() for value in values for v in value.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {list(known)}")
    return tuple(dict.fromkeys(chosen))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--set", choices=sorted(plan.SETS), default="quick", help="quick (default) or full")
    add("--workloads", nargs="+", metavar="W", help=f"a subset of {', '.join(CATALOGUE)}")
    add("--targets", nargs="+", metavar="T", help=f"a subset of {', '.join(targets.TARGETS)}")
    add(
        "--upstream",
        default="auto",
        help="auto (default: dynalite when installed, else moto), dynalite, moto, or the URL "
        "of a DynamoDB-compatible server already running (e.g. DynamoDB Local)",
    )
    add("--duration", type=float, help="seconds measured per step (quick 2, full 10)")
    add("--warmup", type=float, help="seconds of load before each measurement (quick 0.5, full 2)")
    add("--connections", type=int, help="connections for every workload (default 32)")
    add("--sweep", nargs="+", metavar="N", help="connection counts for read-zipf's sweep")
    add("--items", type=int, help="items in each key space (quick 2,000, full 10,000)")
    add("--skew", type=float, help="the Zipf exponent of the key distribution (default 0.99)")
    add("--out", type=Path, default=DEFAULT_OUT, help="where the report, JSON and plots go")
    add("--no-plots", action="store_true", help="skip the PNG plots")
    add(
        "--generator",
        choices=("auto", *measure.GENERATORS),
        default="auto",
        help="the load generator: wrk with the workloads' streams (auto: when installed), or "
        "httpload (Python, per-outcome latency)",
    )
    add(
        "--pin",
        choices=("auto", "on", "off"),
        default="auto",
        help="servers and generator on separate cores (auto: with 2 cores or more)",
    )
    add("--wrk-threads", type=int, default=1, help="wrk threads (default 1: one core)")
    add(
        "--upstream-cpu",
        choices=("servers", "generator"),
        default="servers",
        help="pinned, the upstream shares the servers' core (default: the proxy's, as in the "
        "results below) or the generator's (off the proxy's core, as DynamoDB is)",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = plan.SETS[args.set]
    try:
        if args.workloads:
            settings = replace(settings, workloads=_names(args.workloads, CATALOGUE, "workload"))
        if args.targets:
            settings = replace(settings, targets=_names(args.targets, targets.TARGETS, "target"))
        if args.sweep:
            settings = replace(settings, sweep=_counts(args.sweep))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("duration", args.duration),
            ("warmup", args.warmup),
            ("connections", args.connections),
            ("items", args.items),
            ("skew", args.skew),
        )
        if value is not None
    }
    settings = replace(settings, **changes)
    if settings.duration <= 0 or settings.connections < 1 or settings.items < 1:
        parser.error("--duration, --connections and --items must be positive")
    if settings.warmup < 0 or settings.skew < 0 or min(settings.sweep) < 1:
        parser.error("--warmup and --skew cannot be negative, nor a --sweep count below 1")
    if args.generator == measure.WRK and not loadgen.available():
        parser.error("--generator wrk, but wrk is not installed (apt-get install wrk)")
    if args.pin == "on" and loadgen.cpu_split() is None:
        parser.error("--pin on needs at least two usable cores")
    if args.wrk_threads < 1:
        parser.error("--wrk-threads must be at least 1")
    return args, settings


def _counts(values: list[str]) -> tuple[int, ...]:
    words = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if not words or not all(w.isdigit() for w in words):
        raise argparse.ArgumentTypeError(f"--sweep takes whole numbers, not {values}")
    return tuple(sorted({int(w) for w in words}))


@dataclass
class Run:
    """What the steps share, and what they found."""

    settings: Settings
    work_dir: Path
    progress: Progress
    upstream: targets.Server
    generator: str
    cores: measure.Cores = None
    wrk_threads: int = 1
    upstream_apart: bool = False  # the upstream pinned with the generator
    samples: list[measure.Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seeded: set[str] = field(default_factory=set)

    def warn(self, text: str) -> None:
        self.notes.append(text)
        self.progress.say(f"WARNING: {text}")


def _start(run: Run, step: Step) -> targets.Server:
    name = f"{step.target}-{step.workload.name}"
    if step.target == targets.DIRECT:
        return run.upstream
    if step.target == targets.PROXY:
        caches = step.workload.caches
        run.progress.note("starting daxproxy" + ("" if caches else " with every cache off"))
        proxy = targets.start_proxy(run.upstream.url, run.work_dir, f"daxproxy-{name}", caches)
        try:
            if caches and not step.workload.cold:
                run.progress.note("warming its caches (every item read once)")
                dataset.warm(proxy.url, step.workload)
                _check_warm(run, proxy, step)
        except BaseException:
            proxy.stop()
            raise
        return proxy
    run.progress.note(f"starting the {step.target} server with the workload's answer")
    body = dataset.first_answer(run.upstream.url, step.workload)
    return targets.start_constant(run.work_dir, body, name, step.target)


def _check_warm(run: Run, proxy: targets.Server, step: Step) -> None:
    stats = measure.admin_caches(proxy.url) or {}
    name = "query_cache" if step.workload.operation == "query" else "item_cache"
    entries = (stats.get(name) or {}).get("entries")
    wanted = step.workload.keys
    if step.workload.operation == "query":
        wanted = step.workload.partitions * PAGES_PER_PARTITION
    if entries is not None and entries < wanted:
        run.warn(
            f"{step.workload.name}: after warming, the {name.replace('_', ' ')} holds "
            f"{entries:,} of {wanted:,} entries (its budget?): expect misses"
        )


def _pids(run: Run, step: Step, server: targets.Server) -> dict[str, int | None]:
    if step.target == targets.PROXY:
        return {"server": server.pid, "upstream": run.upstream.pid}
    return {"server": server.pid}


def _generator(run: Run, step: Step) -> str:
    """The cold start needs httpload's timeline (hit ratio per bucket): always httpload."""
    return measure.HTTPLOAD if step.workload.cold else run.generator


def _untimed(sample: measure.Sample) -> bool:
    """wrk measured answers of several outcomes, which its one histogram cannot time apart."""
    return any("p50_us" not in v for k, v in sample["latency"].items() if k != "all")


def _one(
    run: Run, step: Step, server: targets.Server, connections: int, generator: str
) -> measure.Sample:
    return measure.measure(
        server.url,
        step.workload,
        target=step.target,
        connections=connections,
        duration=step.duration,
        warmup=step.warmup,
        pids=_pids(run, step, server),
        log_dir=run.work_dir,
        proxy_url=server.url if step.target == targets.PROXY else None,
        bucket_s=run.settings.bucket_s,
        generator=generator,
        cores=run.cores,
        wrk_threads=run.wrk_threads,
        upstream_apart=run.upstream_apart,
    )


def _outcome_pass(run: Run, step: Step, server: targets.Server, sample: measure.Sample) -> None:
    """httpload over the same step: each outcome's latency, beside wrk's throughput."""
    connections = sample["connections"]
    run.progress.note(f"timing outcomes apart with httpload ({step.duration:g} s)")
    timed = _one(run, step, server, connections, measure.HTTPLOAD)
    for name, figures in timed["latency"].items():
        if name != "all":
            sample["latency"][name] = {**figures, "by": measure.HTTPLOAD}
    sample["outcome_pass"] = {
        "generator": measure.HTTPLOAD,
        "rps": timed["rps"],
        "hit_ratio": timed["hit_ratio"],
        "error_count": timed["error_count"],
        "loadgen": timed["loadgen"],
    }
    sample["error_count"] += timed["error_count"]


def _measure_step(run: Run, step: Step) -> None:
    server = _start(run, step)
    generator = _generator(run, step)
    try:
        if not step.workload.cold:  # a cold cache stays empty until the measurement
            dataset.first_answer(server.url, step.workload)  # answers right, or DataError
        for index, connections in enumerate(step.connections):
            if index:
                run.progress.step(f"{step.title}, {connections} conns")
            run.progress.note(
                f"measuring {step.duration:g} s after {step.warmup:g} s of warm-up ({generator})"
            )
            sample = _one(run, step, server, connections, generator)
            if generator == measure.WRK and _untimed(sample):
                _outcome_pass(run, step, server, sample)
            run.samples.append(sample)
            run.progress.say(report.one_line(sample))
            if sample["loadgen"]["bound"]:
                run.warn(
                    f"{step.title}, {connections} conns: the load generator used "
                    f"{sample['loadgen']['cpu_fraction']:.0%} of a core; it may have set the pace"
                )
        if step.workload.cold:
            dataset.first_answer(server.url, step.workload)
    finally:
        if server is not run.upstream:
            server.stop()


def generator_check(run: Run) -> None:
    """The generator against the fastest Python server, against the proxy's hit rate: a
    warning when under the margin (the report says when the check could not be made)."""
    found = summary.generator_check(run.samples, run.settings.connections, GENERATOR_MARGIN)
    if found is not None and not found["ok"]:
        run.warn(
            f"the generator check failed: {found['reference_rps']:,.0f}/s against the "
            f"Protocol+httptools constant server is {found['ratio']:.2f}x the proxy's hit rate "
            f"({found['hit_rps']:,.0f}/s), under {GENERATOR_MARGIN:g}x: the generator may cap "
            "the proxy's figures"
        )


def _seed(run: Run, step: Step) -> None:
    if step.workload.table in run.seeded:
        return
    run.progress.step(f"seeding {step.workload.table} in {run.upstream.name}")
    started = time.monotonic()
    count = dataset.seed(run.upstream.url, step.workload, run.seeded)
    run.progress.say(
        f"  seeded {count:,} items of {step.workload.item_bytes:,} bytes into "
        f"{run.upstream.name} in {time.monotonic() - started:.1f} s"
    )


def total_steps(steps: list[Step]) -> int:
    tables = {s.workload.table for s in steps}
    measurements = sum(len(s.connections) for s in steps)
    return 1 + len(tables) + measurements + 1


def execute(run: Run, steps: list[Step]) -> None:
    for step in steps:
        _seed(run, step)
        run.progress.step(f"{step.title}, {step.connections[0]} conns")
        _measure_step(run, step)
    generator_check(run)


def _node_version() -> str:
    try:
        done = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def generator_text(run: Run) -> str:
    if run.generator == measure.WRK:
        text = f"wrk ({run.wrk_threads} thread(s), bench/stream.lua)"
    else:
        text = "bench.httpload (Python asyncio, one process)"
    if run.cores is not None:
        text += (
            f"; pinned: servers on CPU {sorted(run.cores[0])}, generator on {sorted(run.cores[1])}"
        )
        if run.upstream_apart:
            text += ", the upstream with the generator"
    return text


def describe_machine(
    upstream: targets.Server, load_generator: str = "", wrk: bool = False
) -> dict[str, Any]:
    import matplotlib

    description = machine.describe(load_generator)
    description["upstream"] = upstream.version or upstream.name
    if upstream.name == "dynalite":
        description["node"] = _node_version()
    description["wrk"] = loadgen.wrk_version() if wrk else None
    description["matplotlib"] = matplotlib.__version__
    description["platform"] = platform.platform()
    return description


def publish(run: Run, out: Path, draw: bool, busy: tuple[float | None, float | None]) -> int:
    run.progress.step("writing the report and plots")
    out.mkdir(parents=True, exist_ok=True)
    facts = summary.Facts(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        settings=run.settings,
        machine=describe_machine(
            run.upstream, generator_text(run), wrk=run.generator == measure.WRK
        ),
        upstream=run.upstream.name,
        samples=run.samples,
        generator=run.generator,
        generator_margin=GENERATOR_MARGIN,
        notes=run.notes,
        cpu_busy_before=busy[0],
        cpu_busy_others_during=busy[1],
    )
    pictures = plots.draw(facts, out) if draw else []
    document = summary.as_json(facts, [p.name for p in pictures])
    (out / summary.JSON_NAME).write_text(json.dumps(document, indent=2) + "\n")
    text = report.markdown(facts, [p.name for p in pictures])
    (out / summary.MARKDOWN_NAME).write_text(text)
    run.progress.close()
    sys.stdout.write(text)
    sys.stdout.flush()
    names = ", ".join([summary.MARKDOWN_NAME, summary.JSON_NAME, *(p.name for p in pictures)])
    print(f"wrote {names} to {out}", file=sys.stderr)
    return 1 if any(s["error_count"] for s in run.samples) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = parse_args(argv)
    # Local servers and dummy keys only: a profile named in the environment must not be read.
    os.environ.pop("AWS_PROFILE", None)
    # SIGTERM unwinds like Ctrl-C, so every finally clause stops its process.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    generator = args.generator
    if generator == "auto":
        generator = measure.WRK if loadgen.available() else measure.HTTPLOAD
    cores = None if args.pin == "off" else loadgen.cpu_split()
    steps = plan.build(settings)
    if not steps:
        print("nothing to measure: no target runs any chosen workload", file=sys.stderr)
        return 1
    progress = Progress(total_steps(steps))
    upstream: targets.Server | None = None
    try:
        busy_before = machine.cpu_busy(0.5)
        if busy_before is not None and busy_before > BUSY_WARNING:
            progress.say(
                f"WARNING: the CPUs are already {busy_before:.0%} busy before the bench starts; "
                "its numbers will be low and noisy"
            )
        kind = targets.choose_upstream(args.upstream)
        with tempfile.TemporaryDirectory(prefix="daxproxy-bench-") as work_dir:
            progress.step(f"starting the upstream: {kind}")
            others = machine.OtherWork()
            upstream = targets.start_upstream(kind, Path(work_dir))
            run = Run(
                settings, Path(work_dir), progress, upstream, generator, cores, args.wrk_threads
            )
            run.upstream_apart = args.upstream_cpu == "generator"
            if cores is not None:
                loadgen.pin(upstream.pid, cores[1] if run.upstream_apart else cores[0])
            if generator == measure.HTTPLOAD:
                run.notes.append(
                    "the load generator is bench.httpload (Python): wrk is not installed or "
                    "was not chosen, and at the proxy's hit rates a Python generator on one "
                    "core may set the pace (see the generator check)"
                )
            if busy_before is not None and busy_before > BUSY_WARNING:
                run.notes.append(f"the CPUs were {busy_before:.0%} busy before the run")
            try:
                execute(run, steps)
            finally:
                upstream.stop()
            busy_during = others.busy_fraction()
            if busy_during is not None and busy_during > BUSY_WARNING:
                run.warn(
                    f"other processes kept {busy_during:.0%} of the CPUs busy during the run: "
                    "its numbers are low and noisy; run it again on a quiet machine"
                )
            return publish(run, args.out, not args.no_plots, (busy_before, busy_during))
    except KeyboardInterrupt:
        progress.close()
        print("interrupted: every process the bench started has been stopped", file=sys.stderr)
        return 130
    except (
        processes.StartError,
        dataset.DataError,
        measure.MeasureError,
        loadgen.LoadError,
        OSError,
    ) as exc:
        progress.close()
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
