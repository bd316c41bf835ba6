"""The bench end to end, tiny: ``python -m bench.run`` must produce its table, JSON and plots.

One workload (read-zipf, warm), two targets (daxproxy in front of moto, and the constant
server), 1 s each at 2 connections, with the bench's own Python load generator and no wrk:
a few seconds in all. It checks that the outputs exist and hold numbers, never what the
numbers are (the bench measures; the suite does not assert speed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--upstream=moto",
        "--workloads=read-zipf",
        "--targets=proxy,constant",
        "--connections=2",
        "--sweep=2",
        "--duration=1",
        "--warmup=0",
        "--items=100",
        "--wrk-check=off",
        f"--out={out}",
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_json_holds_numbers(bench_run: tuple[Path, str]) -> None:
    out, _ = bench_run
    document = json.loads((out / "bench.json").read_text())
    assert document["schema"] == "daxproxy-bench/1"
    assert document["machine"]["cores"] >= 1
    samples = {s["target"]: s for s in document["samples"]}
    assert set(samples) == {"proxy", "constant"}
    for sample in samples.values():
        assert sample["workload"] == "read-zipf"
        assert sample["connections"] == 2
        assert sample["requests"] > 0
        assert sample["rps"] > 0
        assert sample["error_count"] == 0
        assert sample["latency"]["all"]["p50_us"] > 0
        assert sample["latency"]["all"]["p999_us"] >= sample["latency"]["all"]["p50_us"]
        assert sample["rss_bytes"]["server"] > 0
        assert sample["cpu"]["server"]["seconds_per_1k"] is not None
        assert 0 < sample["loadgen"]["cpu_fraction"] < 2
    proxy = samples["proxy"]
    assert proxy["latency"]["hit"]["count"] > 0
    assert proxy["hit_ratio"] > 0.9  # warmed: every key cached before the window
    assert proxy["upstream"]["saved"] > 0
    assert proxy["upstream"]["saved_fraction"] > 0.9
    assert proxy["caches"]["item"]["hits"] > 0
    assert "none" in samples["constant"]["latency"]  # no x-daxproxy-cache header
    headline = document["headline"]
    assert headline["hit_rps"] > 0
    assert headline["ceiling_rps"] > 0
    assert headline["hit_rps_vs_ceiling"] > 0
    assert headline["upstream_saved_fraction"]["read-zipf"] > 0.9


def test_plots_are_pngs(bench_run: tuple[Path, str]) -> None:
    out, _ = bench_run
    document = json.loads((out / "bench.json").read_text())
    pictures = [name for name in document["files"] if name.endswith(".png")]
    assert {"latency.png", "throughput.png"} <= set(pictures)
    for name in pictures:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 1000, name


def test_markdown_table_names_the_targets(bench_run: tuple[Path, str]) -> None:
    out, stdout = bench_run
    text = (out / "bench.md").read_text()
    assert text == stdout
    assert "| read-zipf | daxproxy | 2 |" in text
    assert "| read-zipf | constant (ceiling) | 2 |" in text
    assert "### Latency by outcome" in text
    assert "| read-zipf | daxproxy | 2 | hit |" in text
