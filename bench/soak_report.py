"""The soak's verdict, tables, Markdown report and plot.

Contract: :func:`verdict` checks a run's points against its settings: resident memory levelled
off (the last third's highest RSS over the middle third's by less than :data:`FLAT_MIB` MiB or
:data:`FLAT_SHARE` of it, whichever is larger), its peak below the budgets plus the overhead,
both caches filled (to :data:`FULL_SHARE` of the budget) and evicted, and at most
:data:`ERROR_SHARE` of the requests failed unexpectedly; ``ok`` and the reasons.
:func:`table_rows` merges consecutive points into at most :data:`TABLE_ROWS` rows;
:func:`markdown` renders ``soak.md`` and :func:`draw` ``soak.png``; :func:`trace_lines` the
tracemalloc section. No I/O but the plot's file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.soak_load import MIX, PAGE_ITEMS
from bench.soak_sampler import MIB, Soak, cache_figure, latency_figures, mib, ms_text

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
# Rows in the Markdown table at most: consecutive intervals are merged beyond that.
TABLE_ROWS = 20

MARKDOWN_NAME, JSON_NAME, PLOT_NAME = "soak.md", "soak.json", "soak.png"


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
        full_at = next((p["t_s"] for p in points if (cache_figure(p, name) or 0) >= wanted), None)
        evictions = (cache_figure(points[-1], name, "evictions") or {}) if points else {}
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
        "idle_rss_mib": mib(idle),
        "peak_rss_mib": mib(peak),
        "peak_over_idle_mib": None if peak is None or idle is None else mib(peak - idle),
        "peak_over_budgets_mib": None if peak is None else mib(peak - budget),
        "budgets_mib": mib(budget),
        "bound_mib": mib(bound),
        "middle_third_peak_mib": mib(max(middle)) if middle else None,
        "last_third_peak_mib": mib(max(last)) if last else None,
        "last_third_growth_mib": mib(growth),
        "growth_allowed_mib": mib(allowed),
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
                "item_mib": mib(cache_figure(last, "item")),
                "query_mib": mib(cache_figure(last, "query")),
                "entries": (
                    cache_figure(last, "item", "entries"),
                    cache_figure(last, "query", "entries"),
                ),
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
        return int((cache_figure(soak.points[index], name, "evictions") or {}).get("size", 0))

    return size(group.stop - 1) - size(group.start - 1)


def _pair(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    return f"{ms_text(figures['p50_us'])} / {ms_text(figures['p99_us'])}"


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
        f"Item cache budget {mib(s['item_cache_bytes'])} MiB, query cache "
        f"{mib(s['query_cache_bytes'])} MiB; key space {space['items']:,} items "
        f"(~{mib(space['item_bytes_estimate'])} MiB) and {space['query_pages']:,} Query pages "
        f"of {PAGE_ITEMS} items (~{mib(space['page_bytes_estimate'])} MiB), "
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
    item = [(cache_figure(p, "item") or 0) / MIB for p in points]
    query = [(cache_figure(p, "query") or 0) / MIB for p in points]
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
