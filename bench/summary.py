"""What a ``bench.run`` found, for people (Markdown) and for programs (JSON).

Contract: :func:`headline` derives the figures worth quoting from the samples (see
:mod:`bench.measure` for a sample's keys): cache-hit throughput against the ceiling and
against the upstream straight, on the sweep workload at the main connection count; a hit's
latency against the upstream's at the fewest connections measured (nothing queued) and at
the main count; the upstream requests saved per workload; for the cold start, how long the
hit ratio took to reach :data:`COLD_TARGET` and where it ended; CPU per hit and per
forwarded GetItem (the ``passthrough`` workload, caches off) in microseconds; batches, Query
pages and the 95/5 mix against the upstream straight. :func:`generator_check` compares the
generator's rate against the Protocol+httptools constant server with the proxy's hit rate;
:func:`checks` says whether the load generator may have been the bottleneck (that check, and
its CPU against one core). :func:`markdown` renders the machine, the settings, the headline,
a throughput-and-cost table, a latency-by-outcome table and the workloads;
:func:`as_json` holds the same facts and every sample; :func:`one_line` is a step's result
for the progress display. Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.measure import LOADGEN_BOUND, Sample
from bench.plan import SWEEP_WORKLOAD, Settings, workload_for
from bench.targets import CONSTANT, CONSTANT_FAST, DIRECT, PROXY, TARGETS

MARKDOWN_NAME = "bench.md"
JSON_NAME = "bench.json"
SCHEMA = "daxproxy-bench/1"
OUTCOMES = ("hit", "miss", "bypass", "write", "none")
COLD_TARGET = 0.9


@dataclass(frozen=True)
class Facts:
    date: str
    settings: Settings
    machine: dict[str, Any]
    upstream: str
    samples: list[Sample]
    generator: str = "httpload"
    generator_margin: float = 1.5
    notes: list[str] = field(default_factory=list)
    cpu_busy_before: float | None = None
    cpu_busy_others_during: float | None = None


def target_label(target: str, upstream: str) -> str:
    return {
        DIRECT: f"{upstream} straight",
        PROXY: "daxproxy",
        CONSTANT: "constant (ceiling)",
        CONSTANT_FAST: "constant Protocol+httptools",
    }[target]


def outcome_label(outcome: str) -> str:
    """``none`` (an answer without the cache header) reads as ``read``, beside writes."""
    return "read" if outcome == "none" else outcome


def find(samples: list[Sample], workload: str, target: str, connections: int) -> Sample | None:
    return next(
        (
            s
            for s in samples
            if (s["workload"], s["target"], s["connections"]) == (workload, target, connections)
        ),
        None,
    )


def _p(sample: Sample | None, outcome: str, key: str = "p50_us") -> float | None:
    if sample is None:
        return None
    figures = sample["latency"].get(outcome)
    if not figures or not figures["count"] or key not in figures:
        return None
    return float(figures[key]) / 1000


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def cold_figures(sample: Sample) -> dict[str, Any]:
    """Hit ratio per bucket; when it first reached COLD_TARGET; the last second's."""
    timeline = sample["timeline"]
    counts = timeline["counts"]
    bucket = float(timeline["bucket_s"])
    length = max((len(v) for v in counts.values()), default=0)
    ratios: list[float | None] = []
    for i in range(length):
        hits = counts.get("hit", [0] * length)[i]
        labelled = hits + sum(counts.get(c, [0] * length)[i] for c in ("miss", "bypass"))
        ratios.append(hits / labelled if labelled else None)
    reached = next((i for i, r in enumerate(ratios) if r is not None and r >= COLD_TARGET), None)
    tail = max(1, round(1.0 / bucket))
    last = [c for c in range(max(0, length - tail), length)]
    hits = sum(counts.get("hit", [0] * length)[i] for i in last)
    labelled = hits + sum(counts.get(c, [0] * length)[i] for c in ("miss", "bypass") for i in last)
    return {
        "bucket_s": bucket,
        "hit_ratio": ratios,
        "seconds_to_target": None if reached is None else round((reached + 1) * bucket, 3),
        "target": COLD_TARGET,
        "last_second_hit_ratio": hits / labelled if labelled else None,
    }


def cpu_us(sample: Sample | None, role: str = "server") -> float | None:
    """CPU time per request of a watched process, in microseconds."""
    if sample is None:
        return None
    per_1k = (sample["cpu"].get(role) or {}).get("seconds_per_1k")
    return None if per_1k is None else per_1k * 1000


def generator_check(
    samples: list[Sample], connections: int, margin: float
) -> dict[str, Any] | None:
    """The generator's rate against the Protocol+httptools constant server over the proxy's
    hit rate (read-zipf, ``connections``): at ``margin`` or more it outpaces the proxy."""
    proxy = find(samples, SWEEP_WORKLOAD, PROXY, connections)
    fast = find(samples, SWEEP_WORKLOAD, CONSTANT_FAST, connections)
    if proxy is None or fast is None or not proxy["rps"]:
        return None
    ratio = fast["rps"] / proxy["rps"]
    return {
        "generator": fast["loadgen"].get("generator", "httpload"),
        "connections": connections,
        "reference_rps": fast["rps"],
        "hit_rps": proxy["rps"],
        "ratio": ratio,
        "required": margin,
        "ok": ratio >= margin,
    }


def _versus_direct(samples: list[Sample], main: int) -> dict[str, Any]:
    """Per workload read through the cache: the proxy's requests/s over the upstream's."""
    found = {}
    for s in samples:
        if s["target"] != PROXY or s["connections"] != main or s["workload"] == SWEEP_WORKLOAD:
            continue
        direct = find(samples, s["workload"], DIRECT, main)
        if direct is None:
            continue
        found[s["workload"]] = {
            "proxy_rps": s["rps"],
            "direct_rps": direct["rps"],
            "ratio": _ratio(s["rps"], direct["rps"]),
            "proxy_items_per_s": s["items_per_s"],
        }
    return found


def headline(facts: Facts) -> dict[str, Any]:
    samples = facts.samples
    main = facts.settings.connections
    sweep = sorted({s["connections"] for s in samples if s["workload"] == SWEEP_WORKLOAD})
    fewest = sweep[0] if sweep else main
    proxy = find(samples, SWEEP_WORKLOAD, PROXY, main)
    constant = find(samples, SWEEP_WORKLOAD, CONSTANT, main)
    direct = find(samples, SWEEP_WORKLOAD, DIRECT, main)
    proxy_low = find(samples, SWEEP_WORKLOAD, PROXY, fewest)
    direct_low = find(samples, SWEEP_WORKLOAD, DIRECT, fewest)
    figures: dict[str, Any] = {
        "workload": SWEEP_WORKLOAD,
        "connections": main,
        "fewest_connections": fewest,
        "hit_rps": None if proxy is None else proxy["rps"],
        "hit_ratio": None if proxy is None else proxy["hit_ratio"],
        "ceiling_rps": None if constant is None else constant["rps"],
        "direct_rps": None if direct is None else direct["rps"],
        "hit_rps_vs_ceiling": _ratio(
            None if proxy is None else proxy["rps"], None if constant is None else constant["rps"]
        ),
        "hit_rps_vs_direct": _ratio(
            None if proxy is None else proxy["rps"], None if direct is None else direct["rps"]
        ),
    }
    for where, hit_sample, direct_sample in (
        ("fewest", proxy_low, direct_low),
        ("main", proxy, direct),
    ):
        for key in ("p50_us", "p99_us"):
            name = key.removesuffix("_us")
            hit, straight = _p(hit_sample, "hit", key), _p(direct_sample, "all", key)
            figures[f"hit_{name}_ms_{where}"] = hit
            figures[f"direct_{name}_ms_{where}"] = straight
            figures[f"hit_{name}_vs_direct_{where}"] = _ratio(hit, straight)
    saved = {}
    for s in samples:
        if s["target"] == PROXY and s["connections"] == main and s["upstream"]:
            saved[s["workload"]] = s["upstream"]["saved_fraction"]
    figures["upstream_saved_fraction"] = saved
    fast = find(samples, SWEEP_WORKLOAD, CONSTANT_FAST, main)
    figures["fast_ceiling_rps"] = None if fast is None else fast["rps"]
    figures["hit_rps_vs_fast_ceiling"] = _ratio(
        None if proxy is None else proxy["rps"], None if fast is None else fast["rps"]
    )
    forwarded = find(samples, "passthrough", PROXY, main)
    figures["cpu_per_hit_us"] = cpu_us(proxy)
    figures["cpu_per_forwarded_getitem_us"] = cpu_us(forwarded)
    figures["upstream_cpu_per_forwarded_getitem_us"] = cpu_us(forwarded, "upstream")
    figures["direct_cpu_per_getitem_us"] = cpu_us(direct)
    figures["versus_direct"] = _versus_direct(samples, main)
    cold = next((s for s in samples if s["workload"] == "cold-start"), None)
    figures["cold_start"] = None if cold is None else cold_figures(cold)
    return figures


def checks(facts: Facts) -> dict[str, Any]:
    peak = max((s["loadgen"]["cpu_fraction"] for s in facts.samples), default=None)
    bound = [
        f"{s['workload']}/{s['target']}/{s['connections']}"
        for s in facts.samples
        if s["loadgen"]["bound"]
    ]
    return {
        "generator": facts.generator,
        "generator_check": generator_check(
            facts.samples, facts.settings.connections, facts.generator_margin
        ),
        "loadgen_cpu_peak_fraction": peak,
        "loadgen_bound_limit": LOADGEN_BOUND,
        "loadgen_bound_in": bound,
        "pinned": any(s["loadgen"].get("pinned") for s in facts.samples),
        "cpu_busy_before": facts.cpu_busy_before,
        "cpu_busy_others_during": facts.cpu_busy_others_during,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _share(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def one_line(sample: Sample) -> str:
    hit = sample["hit_ratio"]
    hits = "" if hit is None else f", hits {hit:.1%}"
    p50 = _ms(_p(sample, "all"))
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
                f"**{figures['hit_rps_vs_ceiling']:.2f} of the ceiling** (the constant server, "
                f"{figures['ceiling_rps']:,.0f}/s)"
            )
        if figures["hit_rps_vs_direct"] is not None:
            versus.append(
                f"**{figures['hit_rps_vs_direct']:.1f}x {upstream} straight** "
                f"({figures['direct_rps']:,.0f}/s)"
            )
        ratio = _share(figures["hit_ratio"])
        lines.append(
            f"Cache hits (read-zipf, warm): {figures['hit_rps']:,.0f} GetItem/s at {main} "
            f"connections, {', '.join(versus) or 'nothing to compare with'}; hit ratio {ratio}."
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
        "plus `--admin`; a fresh process per workload",
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
        versus = None if ceiling is None else _ratio(s["rps"], ceiling["rps"])
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


def as_json(facts: Facts, pictures: list[str]) -> dict[str, Any]:
    names = dict.fromkeys(s["workload"] for s in facts.samples)
    workloads = {}
    for name in names:
        workload = workload_for(facts.settings, name)
        workloads[name] = {
            **workload.to_json(),
            "keys": workload.keys,
            "description": workload.describe(),
        }
    return {
        "schema": SCHEMA,
        "date": facts.date,
        "set": facts.settings.name,
        "settings": asdict(facts.settings),
        "machine": facts.machine,
        "upstream": facts.upstream,
        "targets": {t: target_label(t, facts.upstream) for t in TARGETS},
        "workloads": workloads,
        "headline": headline(facts),
        "checks": checks(facts),
        "notes": facts.notes,
        "samples": facts.samples,
        "files": [MARKDOWN_NAME, JSON_NAME, *pictures],
    }
