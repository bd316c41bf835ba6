"""The soak end to end, tiny: ``python -m bench.soak`` must produce its table, JSON and plot.

Three seconds of the mixed load against daxproxy in front of moto, with caches of a few
hundred KiB, sampled every half second. It checks that the outputs exist and hold numbers,
never what the numbers are: the verdict of so short a run means nothing, so either exit
code is accepted as long as the verdict says why.
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


def test_soak_writes_numbers(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench.soak",
        "--upstream=moto",
        "--duration=3",
        "--interval=0.5",
        "--item-cache-mib=0.25",
        "--query-cache-mib=0.125",
        "--rate=100",
        "--concurrency=4",
        f"--out={tmp_path}",
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    document = json.loads((tmp_path / "soak.json").read_text())
    assert document["schema"] == "daxproxy-soak/1"
    assert document["machine"]["cores"] >= 1
    assert document["baseline"]["rss_bytes"] > 0
    points = document["points"]
    assert len(points) == 6
    for point in points:
        assert point["rss_bytes"] > 0
        assert point["cpu_s"] > 0
        assert point["metrics"]["caches"]["item"]["max_bytes"] == 256 * 1024
        assert point["metrics"]["caches"]["query"]["max_bytes"] == 128 * 1024
    assert sum(p["requests"] for p in points) > 0
    assert any(p["latency"].get("hit", {}).get("count") for p in points)
    assert any(p["latency"].get("rejected", {}).get("count") for p in points)
    verdict = document["verdict"]
    assert verdict["peak_rss_mib"] > 0
    assert verdict["ok"] == (done.returncode == 0)
    assert verdict["ok"] or verdict["reasons"]
    text = (tmp_path / "soak.md").read_text()
    assert text == done.stdout
    assert "## Verdict: " in text
    assert "| t (s) | RSS MiB |" in text
    assert (tmp_path / "soak.png").read_bytes().startswith(PNG_SIGNATURE)
