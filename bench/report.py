"""What a run found, rendered for people (Markdown) and for programs (a JSON-ready dict).

Contract: :func:`markdown` renders the machine, the settings, one table row per measured
(target, connections) pair, and the latency each proxied target adds to p50 over its
upstream measured straight at the same connection count; the 1 ms target is judged on
proxy against direct at the fewest connections, where nothing queues. :func:`as_json`
gives the same facts as one dict. Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.loadgen import Measurement

TARGETS = ("direct", "proxy", "constant", "proxy-constant")
LABELS = {
    "direct": "direct to moto",
    "proxy": "daxproxy -> moto",
    "constant": "constant aiohttp server (ceiling)",
    "proxy-constant": "daxproxy -> constant server",
}
# A proxied target, and the target that measures its upstream straight.
UPSTREAM_OF = {"proxy": "direct", "proxy-constant": "constant"}
# The target for pass-through: the proxy adds at most this much to p50.
ADDED_P50_TARGET_MS = 1.0


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    connections: int
    measurement: Measurement


@dataclass(frozen=True, slots=True)
class RunSettings:
    date: str
    generator: str
    duration_s: int
    warmup_s: int
    connections: int
    latency_connections: int
    threads: int
    proxy_options: str
    cpu_busy_before: float | None
    cpu_busy_others_during: float | None


def _find(results: list[Result], target: str, connections: int) -> Measurement | None:
    return next(
        (r.measurement for r in results if (r.target, r.connections) == (target, connections)),
        None,
    )


def added_p50_ms(results: list[Result]) -> dict[tuple[str, int], float]:
    """(proxied target, connections): its p50 minus its upstream's, where both were measured."""
    added = {}
    for r in results:
        upstream = UPSTREAM_OF.get(r.target)
        straight = None if upstream is None else _find(results, upstream, r.connections)
        if straight is not None:
            added[r.target, r.connections] = (r.measurement.p50_us - straight.p50_us) / 1000
    return added


def judged(results: list[Result]) -> tuple[int, float] | None:
    """(connections, ms): the figure the 1 ms target is judged on, proxy at fewest connections."""
    figures = sorted((c, ms) for (t, c), ms in added_p50_ms(results).items() if t == "proxy")
    return figures[0] if figures else None


def _ceiling(results: list[Result], connections: int) -> float | None:
    constant = _find(results, "constant", connections)
    return constant.rps if constant is not None and constant.rps > 0 else None


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def _row(result: Result, results: list[Result]) -> str:
    m = result.measurement
    ceiling = _ceiling(results, result.connections)
    added = added_p50_ms(results).get((result.target, result.connections))
    ratio = f"{m.rps / ceiling:.1%}" if ceiling else "-"
    delta = "-" if added is None else f"{added:+.2f} ms"
    cells = [LABELS[result.target], str(result.connections), f"{m.rps:,.0f}", _ms(m.p50_us)]
    cells += [_ms(m.p90_us), _ms(m.p99_us), _ms(m.p999_us), ratio, delta, str(m.error_count)]
    return "| " + " | ".join(cells) + " |"


def table(results: list[Result]) -> list[str]:
    header = "| Target | Conns | Requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms "
    header += "| rps / ceiling | p50 added by the proxy | Errors |"
    return [header, "|---" + "|---:" * 9 + "|", *(_row(r, results) for r in results)]


def _latency_lines(results: list[Result]) -> list[str]:
    """What the other added-p50 figures mean."""
    added = added_p50_ms(results)
    fewest = min((c for _, c in added), default=None)
    lines = []
    for (target, connections), delta in sorted(added.items()):
        if target == "proxy-constant" and connections == fewest:
            lines.append(
                f"In front of an upstream that answers at once over kept-alive connections (the "
                f"constant server), the proxy adds {delta:+.2f} ms at {connections} "
                "connection(s): its own cost per request."
            )
        elif connections != fewest:
            lines.append(
                f"{LABELS[target]} at {connections} connections: {delta:+.2f} ms, but there "
                "p50 is mostly time queued (p50 ~ connections / requests/s), so it tracks "
                "the difference in throughput, not the cost per request."
            )
    return lines


def verdict(results: list[Result]) -> list[str]:
    figure = judged(results)
    if figure is None:
        first = "The 1 ms target is judged on proxy against direct: this run measured no pair."
    else:
        connections, added = figure
        met = "met" if added <= ADDED_P50_TARGET_MS else "NOT met"
        first = (
            f"**The proxy adds {added:+.2f} ms to p50 over going direct to moto, at "
            f"{connections} connection(s)** (target: at most {ADDED_P50_TARGET_MS:g} ms; {met})."
        )
    return [f"- {line}" for line in (first, *_latency_lines(results))]


def _percent(fraction: float | None) -> str:
    return "?" if fraction is None else f"{fraction:.0%}"


def _threads(settings: RunSettings) -> str:
    return f"{settings.threads} thread(s)" if settings.generator == "wrk" else "one process"


def _header(machine: dict[str, Any], settings: RunSettings) -> list[str]:
    before, during = settings.cpu_busy_before, settings.cpu_busy_others_during
    options = settings.proxy_options or "none"
    return [
        f"## daxproxy pass-through benchmark, {settings.date}",
        "",
        f"- Machine: {machine['cores']} cores, {machine['cpu']}, {machine['os']}; CPUs "
        f"{_percent(before)} busy before the run, {_percent(during)} busy with other "
        "processes during it",
        f"- Software: Python {machine['python']}, aiohttp {machine['aiohttp']}, "
        f"daxproxy {machine['daxproxy']} ({machine['daxproxy_revision']}; extra options: "
        f"{options}), moto {machine['moto']}",
        f"- Load: {machine['load_generator']}, {_threads(settings)}; "
        f"{settings.duration_s} s per measurement after {settings.warmup_s} s of warm-up; "
        "GetItem of one 231-byte item",
    ]


def markdown(machine: dict[str, Any], settings: RunSettings, results: list[Result]) -> str:
    lines = [*_header(machine, settings), "", *table(results), "", *verdict(results)]
    return "\n".join(lines) + "\n"


def as_json(
    machine: dict[str, Any], settings: RunSettings, results: list[Result]
) -> dict[str, Any]:
    added = added_p50_ms(results)
    rows = []
    for r in results:
        ceiling = _ceiling(results, r.connections)
        row = {"target": r.target, "label": LABELS[r.target], "connections": r.connections}
        row |= asdict(r.measurement)
        row["rps_vs_ceiling"] = r.measurement.rps / ceiling if ceiling else None
        row["p50_added_by_proxy_ms"] = added.get((r.target, r.connections))
        rows.append(row)
    figure = judged(results)
    return {
        "settings": asdict(settings),
        "machine": machine,
        "results": rows,
        "added_p50_target_ms": ADDED_P50_TARGET_MS,
        "added_p50_judged": None
        if figure is None
        else {
            "connections": figure[0],
            "proxy_added_p50_ms": figure[1],
            "met": figure[1] <= ADDED_P50_TARGET_MS,
        },
    }
