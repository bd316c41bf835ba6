"""The bench end to end, tiny: ``python -m bench.run`` must produce its table, JSON and plots.

One workload (read-zipf, warm), two targets (daxproxy in front of moto, and the constant
server), 1 s each at 2 connections, with the bench's own Python load generator; then, where
wrk is installed, read-zipf and passthrough (at 1 connection too) with wrk against daxproxy and the
Protocol+httptools constant server (the generator check): a few seconds each. It checks that
the outputs exist and hold numbers, never what the numbers are (the bench measures; the
suite does not assert speed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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
        "--generator=httpload",
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


@pytest.fixture(scope="module")
def wrk_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    out = tmp_path_factory.mktemp("bench-wrk")
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--upstream=moto",
        "--workloads=read-zipf,passthrough",
        "--targets=proxy,constant-fast",
        "--connections=2",
        "--sweep=2",
        "--duration=1",
        "--warmup=0",
        "--items=100",
        "--generator=wrk",
        "--no-plots",
        f"--out={out}",
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document: dict[str, Any] = json.loads((out / "bench.json").read_text())
    return document


def test_wrk_drives_the_workloads_and_checks_itself(wrk_run: dict[str, Any]) -> None:
    samples = {(s["workload"], s["target"]): s for s in wrk_run["samples"]}
    assert set(samples) == {
        ("read-zipf", "proxy"),
        ("read-zipf", "constant-fast"),
        ("passthrough", "proxy"),
    }
    for sample in samples.values():
        assert sample["loadgen"]["generator"] == "wrk"
        assert sample["requests"] > 0
        assert sample["error_count"] == 0
        assert sample["latency"]["all"]["p50_us"] > 0
    hits = samples["read-zipf", "proxy"]
    assert hits["labels"]["hit"] > 0
    assert hits["latency"]["hit"]["p50_us"] == hits["latency"]["all"]["p50_us"]
    assert hits["hit_ratio"] > 0.9
    alone = [s["connections"] for s in wrk_run["samples"] if s["workload"] == "passthrough"]
    assert sorted(alone) == [1, 2]  # a forward alone, and at the main count
    forwarded = samples["passthrough", "proxy"]
    assert forwarded["connections"] == 2
    assert forwarded["hit_ratio"] == 0.0  # every cache off: nothing is a hit
    assert forwarded["cpu"]["server"]["seconds_per_1k"] is not None
    check = wrk_run["checks"]["generator_check"]
    assert check["generator"] == "wrk"
    assert check["reference_rps"] > 0
    assert check["hit_rps"] > 0
    assert check["ok"] == (check["ratio"] >= check["required"])
    assert wrk_run["headline"]["cpu_per_hit_us"] > 0
    assert wrk_run["headline"]["cpu_per_forwarded_getitem_us"] > 0
    assert wrk_run["headline"]["cpu_per_lone_forwarded_getitem_us"] > 0
