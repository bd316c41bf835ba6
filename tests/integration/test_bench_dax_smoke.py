"""``python -m bench.dax`` end to end, tiny: daxproxy in front of moto, 2 connections, 1 s a
row, HTTP and DAX hits through bench.replay (and wrk where it is installed), then the
generator check against the constant server. It checks the table's rows hold numbers and
no errors, never what the numbers are (the bench measures; the suite does not assert speed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dax_and_http_hits_are_measured_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "dax.json"
    command = [sys.executable, "-m", "bench.dax", "--upstream=moto", "--items=50"]
    command += ["--connections", "2", "--duration=1", "--warmup=0", f"--json={out}"]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = [
        line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    labels = [line.split(" | ")[0].lstrip("| ") for line in rows[1:]]
    expected = ["HTTP hit (replay)", "DAX hit (replay)"]
    if shutil.which("wrk") is not None:
        expected.append("HTTP hit (wrk)")
    assert labels == [*expected, "HTTP, constant-fast (replay)"]
    assert "Generator check: replay drove constant-fast" in done.stdout
    samples = json.loads(out.read_text())["samples"]
    for sample in samples:
        assert sample["requests"] > 0
        assert sample["error_count"] == 0
        assert sample["latency"]["all"]["p99_us"] >= sample["latency"]["all"]["p50_us"] > 0
    for sample in samples[:2]:  # the replay rows through the proxy
        assert sample["cpu"]["server"]["seconds_per_1k"] is not None
        assert sample["caches"]["item"]["hits"] > 0
        assert sample["verified"] > 0
