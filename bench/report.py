"""A ``bench.run``'s report in Markdown: what :mod:`bench.summary` found, for people.

Contract: :func:`markdown` renders the machine, the settings, the generator's checks and the
warnings, the headline, a throughput-and-cost table (13 columns), a latency-by-outcome table
(9 columns: :func:`bench.plots.from_tables` reads both back by their widths) and the
workloads; :func:`one_line` is a step's result for the progress display. An outcome timed by
the second pass with :mod:`bench.httpload` (wrk's histogram being one for all answers) says
so beside its name; a sample whose outcomes were not timed apart shows one ``all`` row.
Pure functions: no I/O.
"""

from __future__ import annotations

from typing import Any

from bench.measure import LOADGEN_BOUND, Sample
from bench.plan import workload_for
from bench.summary import (
    COLD_TARGET,
    OUTCOMES,
    Facts,
    checks,
    find,
    headline,
    outcome_label,
    percentile_ms,
    ratio,
    target_label,
)
from bench.targets import CONSTANT, CONSTANT_FAST


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _share(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def one_line(sample: Sample) -> str:
    hit = sample["hit_ratio"]
    hits = "" if hit is None else f", hits {hit:.1%}"
    p50 = _ms(percentile_ms(sample, "all"))
    return (
        f"  {sample['workload']}, {sample['target']}, {sample['connections']} conns: "
        f"{sample['rps']:,.0f} requests/s{hits}, p50 {p50} ms, {sample['error_count']} errors"
    )


def _cost_lines(upstream: str, main: int, figures: dict[str, Any]) -> list[str]:
    """The Protocol ceiling, CPU per request and the workloads against the upstream."""
    lines = []
    if figures["hit_rps_vs_fast_ceiling"] is not None:
        lines.append(
            f"Against the Protocol+httptools constant server (the ceiling for any Python "
            f"server here, {figures['fast_ceiling_rps']:,.0f}/s): "
            f"**{figures['hit_rps_vs_fast_ceiling']:.2f}** of it."
        )
    cost = []
    if figures["cpu_per_hit_us"] is not None:
        cost.append(f"**{figures['cpu_per_hit_us']:.0f} µs per GetItem hit**")
    if figures["cpu_per_forwarded_getitem_us"] is not None:
        upstream_us = figures["upstream_cpu_per_forwarded_getitem_us"]
        cost.append(
            f"**{figures['cpu_per_forwarded_getitem_us']:.0f} µs per forwarded GetItem** with "
            "the caches off (passthrough"
            + ("" if upstream_us is None else f"; {upstream_us:.0f} µs in {upstream}")
            + ")"
        )
    if figures["direct_cpu_per_getitem_us"] is not None:
        cost.append(f"{upstream} straight {figures['direct_cpu_per_getitem_us']:.0f} µs")
    if cost:
        lines.append(f"CPU of the server per request at {main} connections: {', '.join(cost)}.")
    alone = figures["cpu_per_lone_forwarded_getitem_us"]
    if alone is not None:
        upstream_us = figures["upstream_cpu_per_lone_forwarded_getitem_us"]
        lines.append(
            f"A forward alone (passthrough at 1 connection, as a miss or write is in a "
            f"mostly-hit load): **{alone:.0f} µs of the proxy's CPU per forwarded GetItem**"
            + ("" if upstream_us is None else f", {upstream_us:.0f} µs in {upstream}")
            + "."
        )
    for name, pair in figures["versus_direct"].items():
        lines.append(
            f"{name}: daxproxy {pair['proxy_rps']:,.0f}/s against {upstream} straight "
            f"{pair['direct_rps']:,.0f}/s (**{_times(pair['ratio'])}**)."
        )
    return lines


def _headline_lines(facts: Facts, figures: dict[str, Any]) -> list[str]:
    upstream = facts.upstream
    lines = []
    main, fewest = figures["connections"], figures["fewest_connections"]
    if figures["hit_rps"] is not None:
        versus = []
        if figures["hit_rps_vs_ceiling"] is not None:
            versus.append(
                f"**{figures['hit_rps_vs_ceiling']:.2f} of the ceiling** (the aiohttp constant "
                f"server, {figures['ceiling_rps']:,.0f}/s)"
            )
        if figures["hit_rps_vs_direct"] is not None:
            versus.append(
                f"**{figures['hit_rps_vs_direct']:.1f}x {upstream} straight** "
                f"({figures['direct_rps']:,.0f}/s)"
            )
        share = _share(figures["hit_ratio"])
        lines.append(
            f"Cache hits (read-zipf, warm): {figures['hit_rps']:,.0f} GetItem/s at {main} "
            f"connections, {', '.join(versus) or 'nothing to compare with'}; hit ratio {share}."
        )
    for where, count in (("fewest", fewest), ("main", main)):
        hit, straight = figures[f"hit_p50_ms_{where}"], figures[f"direct_p50_ms_{where}"]
        if hit is None or straight is None:
            continue
        hit99, straight99 = figures[f"hit_p99_ms_{where}"], figures[f"direct_p99_ms_{where}"]
        lines.append(
            f"Hit latency at {count} connection(s): **p50 {hit:.2f} ms against {straight:.2f} ms "
            f"straight to {upstream} ({figures[f'hit_p50_vs_direct_{where}']:.2f}x)**; p99 "
            f"{_ms(hit99)} against {_ms(straight99)} ms."
        )
        if where == "fewest" and fewest == main:
            break
    lines += _cost_lines(upstream, main, figures)
    saved = figures["upstream_saved_fraction"]
    if saved:
        parts = [f"{_share(v)} in {w}" for w, v in saved.items()]
        lines.append(f"**Upstream requests saved**: {', '.join(parts)}.")
    cold = figures["cold_start"]
    if cold is not None:
        reached = cold["seconds_to_target"]
        when = (
            f"reached {COLD_TARGET:.0%} after {reached:g} s"
            if reached is not None
            else f"never reached {COLD_TARGET:.0%}"
        )
        lines.append(
            f"Cold start: the hit ratio {when}; {_share(cold['last_second_hit_ratio'])} in the "
            "last second measured."
        )
    return [f"- {line}" for line in lines]


def _check_lines(facts: Facts, found: dict[str, Any]) -> list[str]:
    peak = found["loadgen_cpu_peak_fraction"]
    bound = found["loadgen_bound_in"]
    text = (
        f"Load generator ({found['generator']}): its CPU peaked at {_share(peak, 0)} of one "
        f"core (limit {LOADGEN_BOUND:.0%}): "
    )
    text += f"**it may have set the pace in {', '.join(bound)}**" if bound else "not the bottleneck"
    lines = [text]
    check = found["generator_check"]
    if check is None:
        lines.append(
            "Generator check: not made (it needs read-zipf through daxproxy and against the "
            "Protocol+httptools constant server at the main connection count)."
        )
    else:
        verdict = (
            "passed: it outpaces the proxy"
            if check["ok"]
            else "**FAILED: the generator may cap the proxy's figures**"
        )
        lines.append(
            f"Generator check ({check['generator']}, read-zipf, {check['connections']} "
            f"connections): {check['reference_rps']:,.0f}/s against the Protocol+httptools "
            f"constant server, {check['ratio']:.2f}x the proxy's hit rate "
            f"({check['hit_rps']:,.0f}/s; required: {check['required']:g}x): {verdict}."
        )
    return lines


def _header(facts: Facts) -> list[str]:
    m, s = facts.machine, facts.settings
    busy = f"CPUs {_share(facts.cpu_busy_before, 0)} busy before the run, " + (
        f"{_share(facts.cpu_busy_others_during, 0)} busy with other processes during it"
    )
    upstream = m.get("upstream", facts.upstream)
    if m.get("node"):
        upstream += f" (node {m['node']})"
    wrk = f", {m['wrk']}" if m.get("wrk") else ""
    return [
        f"## daxproxy bench, {s.name} set, {facts.date}",
        "",
        f"- Machine: {m['cores']} cores, {m['cpu']}, {m['os']}; {busy}",
        f"- Software: Python {m['python']}, aiohttp {m['aiohttp']}, daxproxy {m['daxproxy']} "
        f"({m['daxproxy_revision']}), upstream {upstream}, matplotlib {m['matplotlib']}{wrk}",
        f"- Load: {m['load_generator']}, closed loop; {s.duration:g} s per measurement after "
        f"{s.warmup:g} s of warm-up; {s.connections} connections (read-zipf also at "
        f"{', '.join(str(c) for c in s.sweep)}); Zipf skew {s.skew:g}",
        "- daxproxy: its defaults (item cache 256 MiB, 5-minute TTLs, query cache 64 MiB) "
        "plus `--admin` (every cache off for `passthrough`); a fresh process per workload",
    ]


def _throughput_table(facts: Facts) -> list[str]:
    header = (
        "| Workload | Target | Conns | Requests/s | Items/s | x ceiling | Hit ratio "
        "| Upstream saved | CPU s / 1k req | Upstream CPU s / 1k | RSS MB | Generator CPU "
        "| Errors |"
    )
    rows = [header, "|---|---|" + "---:|" * 11]
    for s in facts.samples:
        ceiling = find(facts.samples, s["workload"], CONSTANT, s["connections"])
        versus = None if ceiling is None else ratio(s["rps"], ceiling["rps"])
        server = s["cpu"].get("server", {}).get("seconds_per_1k")
        upstream_cpu = s["cpu"].get("upstream", {}).get("seconds_per_1k")
        rss = s["rss_bytes"].get("server")
        saved = None if not s["upstream"] else s["upstream"]["saved_fraction"]
        generator = f"{s['loadgen'].get('generator', 'httpload')} " + (
            f"{s['loadgen']['cpu_fraction']:.0%}" + (" (bound)" if s["loadgen"]["bound"] else "")
        )
        cells = [
            s["workload"],
            target_label(s["target"], facts.upstream),
            str(s["connections"]),
            f"{s['rps']:,.0f}",
            f"{s['items_per_s']:,.0f}",
            "-" if versus is None or s["target"] in (CONSTANT, CONSTANT_FAST) else f"{versus:.2f}",
            _share(s["hit_ratio"]),
            _share(saved),
            "-" if server is None else f"{server:.3f}",
            "-" if upstream_cpu is None else f"{upstream_cpu:.3f}",
            "-" if rss is None else f"{rss / 2**20:,.0f}",
            generator,
            str(s["error_count"]),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _latency_table(facts: Facts) -> list[str]:
    rows = [
        "| Workload | Target | Conns | Outcome | Answers | p50 ms | p90 ms | p99 ms | p99.9 ms |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in facts.samples:
        timed = [
            o
            for o in OUTCOMES
            if "p50_us" in (s["latency"].get(o) or {}) and s["latency"][o]["count"]
        ]
        for outcome in timed or ["all"]:
            figures = s["latency"][outcome]
            by = figures.get("by")
            cells = [
                s["workload"],
                target_label(s["target"], facts.upstream),
                str(s["connections"]),
                outcome_label(outcome) + (f" ({by})" if by else ""),
                f"{figures['count']:,}",
                *(_ms(figures[k] / 1000) for k in ("p50_us", "p90_us", "p99_us", "p999_us")),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def _workload_rows(facts: Facts) -> list[str]:
    rows = ["| Workload | What |", "|---|---|"]
    for name in dict.fromkeys(s["workload"] for s in facts.samples):
        rows.append(f"| {name} | {workload_for(facts.settings, name).describe()} |")
    return rows


def markdown(facts: Facts, pictures: list[str]) -> str:
    figures, found = headline(facts), checks(facts)
    lines = _header(facts)
    lines += [f"- {line}" for line in _check_lines(facts, found)]
    lines += [f"- **Warning:** {note}" for note in facts.notes]
    lines += ["", "### Headline", "", *_headline_lines(facts, figures)]
    lines += ["", "### Throughput and cost", "", *_throughput_table(facts)]
    lines += ["", "### Latency by outcome", "", *_latency_table(facts)]
    lines += ["", "### Workloads", "", *_workload_rows(facts)]
    if pictures:
        lines += ["", "### Plots", "", *(f"- ![{p}]({p})" for p in pictures)]
    return "\n".join(lines) + "\n"
