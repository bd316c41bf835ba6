"""The plots of a ``bench.run``, as PNG files drawn with matplotlib's Agg backend.

Contract: :func:`draw` writes, into a directory, the plots the samples allow and returns
their paths: ``latency.png`` (p50, p90, p99 and p99.9 per target and outcome, one panel per
workload, at the main connection count, log scale), ``throughput.png`` (requests/s and p50
against connections for each target of the sweep workload) and ``cold_start.png`` (the hit
ratio and requests/s over time from an empty cache). A plot without data is skipped. No
display is needed; nothing else is written.

:func:`from_tables` rebuilds the samples a report's Markdown tables hold (requests/s and
latency percentiles; no timeline, so no cold-start curve), so that the plots committed
under ``bench/plots/`` are drawn from the very figures ``bench/README.md`` quotes:
``python -m bench.plots bench/README.md bench/plots``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from bench.plan import SETS, SWEEP_WORKLOAD
from bench.summary import Facts, cold_figures, outcome_label, target_label
from bench.targets import CONSTANT, CONSTANT_FAST, DIRECT, PROXY

PERCENTILES = (("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9"))
COLOURS = {DIRECT: "#4c72b0", PROXY: "#dd8452", CONSTANT: "#55a868", CONSTANT_FAST: "#8172b3"}
OUTCOME_ORDER = ("hit", "miss", "bypass", "write", "none")
DPI = 110
# Log axes labelled 0.5, 1, 2, 10 rather than 2 x 10^0; minor ticks only at 2, 3 and 5.
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


def _minor(value: float, _: object) -> str:
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5)) else ""


MINOR = FuncFormatter(_minor)


def _label(target: str, upstream: str) -> str:
    return target_label(target, upstream)


def _latency(facts: Facts, out: Path, dpi: int = DPI) -> Path | None:
    main = facts.settings.connections
    panels: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for s in facts.samples:
        if s["connections"] != main:
            continue
        for outcome in OUTCOME_ORDER:
            figures = s["latency"].get(outcome)
            if figures and figures["count"] and "p50_us" in figures:
                name = _label(s["target"], facts.upstream)
                label = f"{name}: {outcome_label(outcome)}" if len(s["latency"]) > 2 else name
                panels.setdefault(s["workload"], []).append((label, figures))
    if not panels:
        return None
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.6 * rows), squeeze=False)
    width = 0.2
    for axis, (workload, series) in zip(axes.flat, panels.items(), strict=False):
        positions = range(len(series))
        for offset, (key, name) in enumerate(PERCENTILES):
            values = [max(f[key], 1) / 1000 for _, f in series]
            axis.bar([p + (offset - 1.5) * width for p in positions], values, width, label=name)
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(PLAIN)
        axis.yaxis.set_minor_formatter(MINOR)
        axis.tick_params(axis="y", which="minor", labelsize=7)
        axis.set_xticks(list(positions))
        axis.set_xticklabels([name for name, _ in series], rotation=20, ha="right", fontsize=8)
        axis.set_ylabel("ms (log)")
        axis.set_title(f"{workload}, {main} connections", fontsize=10)
        axis.grid(axis="y", which="both", alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle("Latency percentiles by target and outcome")
    figure.tight_layout()
    path = out / "latency.png"
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def _throughput(facts: Facts, out: Path, dpi: int = DPI) -> Path | None:
    sweep = [s for s in facts.samples if s["workload"] == SWEEP_WORKLOAD]
    if not sweep:
        return None
    figure, (rate, latency) = plt.subplots(1, 2, figsize=(12, 4.2))
    for target in (DIRECT, PROXY, CONSTANT, CONSTANT_FAST):
        points = sorted((s["connections"], s) for s in sweep if s["target"] == target)
        if not points:
            continue
        counts = [c for c, _ in points]
        label = _label(target, facts.upstream)
        colour = COLOURS[target]
        rate.plot(counts, [s["rps"] for _, s in points], "o-", label=label, color=colour)
        p50 = [s["latency"]["all"]["p50_us"] / 1000 for _, s in points]
        latency.plot(counts, p50, "o-", label=label, color=colour)
    for axis in (rate, latency):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(PLAIN)
        axis.set_xlabel("connections (closed loop)")
        axis.grid(alpha=0.3, which="both")
    rate.set_ylabel("requests/s")
    rate.set_ylim(bottom=0)
    rate.set_title(f"Throughput against concurrency ({SWEEP_WORKLOAD})", fontsize=10)
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(PLAIN)
    latency.set_ylabel("p50 ms (log)")
    latency.set_title("p50 latency against concurrency", fontsize=10)
    rate.legend(fontsize=8)
    figure.tight_layout()
    path = out / "throughput.png"
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def _cold_start(facts: Facts, out: Path) -> Path | None:
    cold = next((s for s in facts.samples if s["workload"] == "cold-start"), None)
    if cold is None:
        return None
    figures = cold_figures(cold)
    bucket = figures["bucket_s"]
    ratios = figures["hit_ratio"]
    if not ratios:
        return None
    times = [(i + 1) * bucket for i in range(len(ratios))]
    counts = cold["timeline"]["counts"]
    totals = [sum(series[i] for series in counts.values()) / bucket for i in range(len(ratios))]
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(
        times,
        [math.nan if r is None else r * 100 for r in ratios],
        color=COLOURS[PROXY],
        label="hit ratio",
    )
    axis.set_ylim(0, 100)
    axis.set_xlabel("seconds since the first request")
    axis.set_ylabel("hit ratio %")
    axis.grid(alpha=0.3)
    rate = axis.twinx()
    rate.plot(times, totals, color="#777777", alpha=0.6, linewidth=1, label="requests/s")
    rate.set_ylabel("requests/s")
    rate.set_ylim(bottom=0)
    handles = axis.get_legend_handles_labels()
    more = rate.get_legend_handles_labels()
    axis.legend(handles[0] + more[0], handles[1] + more[1], loc="lower right", fontsize=8)
    axis.set_title(
        f"Cold start: daxproxy from an empty cache, {cold['connections']} connections "
        f"({bucket * 1000:g} ms buckets)",
        fontsize=10,
    )
    figure.tight_layout()
    path = out / "cold_start.png"
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def draw(facts: Facts, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    drawn = (_latency(facts, out), _throughput(facts, out), _cold_start(facts, out))
    return [path for path in drawn if path is not None]


# The committed plots: the headline's workloads, small enough to show in bench/README.md.
README_WORKLOADS = ("read-zipf", "batch-25", "query", "size-40kb")
README_DPI = 72
_ROW = re.compile(r"^\|(.+)\|\s*$")


def from_tables(
    markdown: str, upstream: str = "dynalite", workloads: Sequence[str] = README_WORKLOADS
) -> Facts:
    """The samples of a report's first "Throughput and cost" and "Latency by outcome"
    tables (a run's ``bench.md``, or its copy in ``bench/README.md``), for ``workloads``."""
    targets = {target_label(t, upstream): t for t in (DIRECT, PROXY, CONSTANT, CONSTANT_FAST)}
    samples: dict[tuple[str, str, int], dict[str, Any]] = {}
    latency_seen = False
    for line in markdown.splitlines():
        if line.startswith("### Latency by outcome"):
            latency_seen = True
        elif latency_seen and line.startswith("###"):
            break  # the first run's tables only
        match = _ROW.match(line)
        if match is None:
            continue
        cells = [c.strip() for c in match.group(1).split("|")]
        if len(cells) < 4 or cells[0] not in workloads or cells[1] not in targets:
            continue
        key = (cells[0], targets[cells[1]], int(cells[2]))
        sample = samples.setdefault(
            key,
            {"workload": key[0], "target": key[1], "connections": key[2], "latency": {}},
        )
        if len(cells) == 13:
            sample["rps"] = float(cells[3].replace(",", ""))
        elif len(cells) == 9:
            outcome = "none" if cells[3] == "read" else cells[3]
            figures = {"count": int(cells[4].replace(",", ""))}
            for (name, _), cell in zip(PERCENTILES, cells[5:9], strict=True):
                figures[name] = round(float(cell) * 1000)
            sample["latency"][outcome] = figures
    for sample in samples.values():
        outcomes = [v for k, v in sample["latency"].items() if k != "all"]
        if len(outcomes) == 1:
            sample["latency"]["all"] = outcomes[0]
    return Facts(
        date="",
        settings=SETS["full"],
        machine={},
        upstream=upstream,
        samples=list(samples.values()),
    )


def draw_from_tables(markdown: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    facts = from_tables(markdown)
    drawn = (_latency(facts, out, README_DPI), _throughput(facts, out, README_DPI))
    return [path for path in drawn if path is not None]


if __name__ == "__main__":
    given = sys.argv[1:]
    source = given[0] if given else "bench/README.md"
    target = given[1] if len(given) > 1 else "bench/plots"
    for drawn_path in draw_from_tables(Path(source).read_text(encoding="utf-8"), Path(target)):
        print(drawn_path)
