"""The committed bench plots are drawn from the figures bench/README.md quotes."""

from __future__ import annotations

from pathlib import Path

from bench.plots import draw_from_tables, from_tables
from bench.targets import CONSTANT, DIRECT, PROXY

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_tables_become_the_samples_they_quote() -> None:
    facts = from_tables((BENCH / "README.md").read_text(encoding="utf-8"))
    by_key = {(s["workload"], s["target"], s["connections"]): s for s in facts.samples}
    hit = by_key["read-zipf", PROXY, 32]
    assert hit["rps"] == 71444 and hit["latency"]["hit"]["p50_us"] == 410
    assert hit["latency"]["all"] == hit["latency"]["hit"]
    assert by_key["read-zipf", CONSTANT, 32]["rps"] == 17775
    assert by_key["read-zipf", DIRECT, 1]["latency"]["none"]["p99_us"] == 1270
    assert sorted(c for w, t, c in by_key if w == "read-zipf" and t == PROXY) == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
    ]
    # The tables of the plotted workloads only.
    assert {s["workload"] for s in facts.samples} == {"read-zipf", "batch-25", "query", "size-40kb"}
    assert len(by_key) == len(facts.samples)


def test_the_committed_plots_exist_and_are_small(tmp_path: Path) -> None:
    drawn = draw_from_tables((BENCH / "README.md").read_text(encoding="utf-8"), tmp_path)
    assert sorted(p.name for p in drawn) == ["latency.png", "throughput.png"]
    for path in drawn:
        committed = BENCH / "plots" / path.name
        assert committed.stat().st_size < 100_000, path.name
        assert f"](plots/{path.name})" in (BENCH / "README.md").read_text(encoding="utf-8")
