"""What a ``bench.run`` found, for programs (JSON); :mod:`bench.report` renders it for people.

Contract: :func:`headline` derives the figures worth quoting from the samples (see
:mod:`bench.measure` for a sample's keys): cache-hit throughput against both ceilings (the
aiohttp and the Protocol+httptools constant servers) and against the upstream straight, on
the sweep workload at the main connection count; a hit's latency against the upstream's at
the fewest connections measured (nothing queued) and at the main count; the upstream
requests saved per workload; for the cold start, how long the hit ratio took to reach
:data:`COLD_TARGET` and where it ended; CPU per hit and per forwarded GetItem (the
``passthrough`` workload, caches off) in microseconds, at the main count and at one
connection (a forward alone); batches, Query pages and the mixes against the upstream
straight. :func:`generator_check` compares the generator's rate against
the Protocol+httptools constant server with the proxy's hit rate; :func:`checks` says
whether the load generator may have been the bottleneck (that check, and its CPU against one
core). :func:`as_json` holds the same facts and every sample. Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.measure import LOADGEN_BOUND, Sample
from bench.plan import LONE_WORKLOAD, SWEEP_WORKLOAD, Settings, workload_for
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


def percentile_ms(sample: Sample | None, outcome: str, key: str = "p50_us") -> float | None:
    if sample is None:
        return None
    figures = sample["latency"].get(outcome)
    if not figures or not figures["count"] or key not in figures:
        return None
    return float(figures[key]) / 1000


def ratio(a: float | None, b: float | None) -> float | None:
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
    times = fast["rps"] / proxy["rps"]
    return {
        "generator": fast["loadgen"].get("generator", "httpload"),
        "connections": connections,
        "reference_rps": fast["rps"],
        "hit_rps": proxy["rps"],
        "ratio": times,
        "required": margin,
        "ok": times >= margin,
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
            "ratio": ratio(s["rps"], direct["rps"]),
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
        "hit_rps_vs_ceiling": ratio(
            None if proxy is None else proxy["rps"], None if constant is None else constant["rps"]
        ),
        "hit_rps_vs_direct": ratio(
            None if proxy is None else proxy["rps"], None if direct is None else direct["rps"]
        ),
    }
    for where, hit_sample, direct_sample in (
        ("fewest", proxy_low, direct_low),
        ("main", proxy, direct),
    ):
        for key in ("p50_us", "p99_us"):
            name = key.removesuffix("_us")
            hit, straight = (
                percentile_ms(hit_sample, "hit", key),
                percentile_ms(direct_sample, "all", key),
            )
            figures[f"hit_{name}_ms_{where}"] = hit
            figures[f"direct_{name}_ms_{where}"] = straight
            figures[f"hit_{name}_vs_direct_{where}"] = ratio(hit, straight)
    saved = {}
    for s in samples:
        if s["target"] == PROXY and s["connections"] == main and s["upstream"]:
            saved[s["workload"]] = s["upstream"]["saved_fraction"]
    figures["upstream_saved_fraction"] = saved
    fast = find(samples, SWEEP_WORKLOAD, CONSTANT_FAST, main)
    figures["fast_ceiling_rps"] = None if fast is None else fast["rps"]
    figures["hit_rps_vs_fast_ceiling"] = ratio(
        None if proxy is None else proxy["rps"], None if fast is None else fast["rps"]
    )
    forwarded = find(samples, LONE_WORKLOAD, PROXY, main)
    alone = find(samples, LONE_WORKLOAD, PROXY, 1) if main != 1 else None
    figures["cpu_per_hit_us"] = cpu_us(proxy)
    figures["cpu_per_forwarded_getitem_us"] = cpu_us(forwarded)
    figures["upstream_cpu_per_forwarded_getitem_us"] = cpu_us(forwarded, "upstream")
    figures["cpu_per_lone_forwarded_getitem_us"] = cpu_us(alone)
    figures["upstream_cpu_per_lone_forwarded_getitem_us"] = cpu_us(alone, "upstream")
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
