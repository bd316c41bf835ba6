"""The machine and software a run measured, and whether the machine was quiet.

Contract: :func:`describe` returns a JSON-ready dict: cores, CPU model (from
``/proc/cpuinfo``), OS, Python, aiohttp, daxproxy (version and git revision, flagged when
``daxproxy/`` has uncommitted changes), moto and the load generator. :func:`cpu_busy`
samples ``/proc/stat`` for a moment: the fraction of all cores kept busy. :class:`OtherWork`
measures, over a whole run, the fraction of all cores kept busy by processes other than this
one and the children it has reaped. Both give None where there is no ``/proc/stat``.
Every subprocess here is bounded by a timeout.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

import daxproxy

REPO_ROOT = Path(__file__).resolve().parents[1]
PROC_STAT = Path("/proc/stat")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def source_revision() -> str:
    """The checkout measured: its commit, and whether daxproxy/ had uncommitted changes."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown revision"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "daxproxy")
    return f"{commit} + uncommitted changes" if dirty else commit


def describe(load_generator: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "daxproxy": daxproxy.__version__,
        "daxproxy_revision": source_revision(),
        "moto": importlib.metadata.version("moto"),
        "load_generator": load_generator,
    }


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores since boot."""
    try:
        first = PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal; guest time is already in user.
    values = [int(v) for v in first[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The fraction of all cores busy over the next ``seconds`` (the harness itself sleeps)."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _own_cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class OtherWork:
    """Started before a run, read after it once every child has exited."""

    _start: tuple[int, int] | None = field(default_factory=_cpu_times)
    _own_start: float = field(default_factory=_own_cpu_seconds)

    def busy_fraction(self) -> float | None:
        """Of all cores' time since the start, the share other processes used."""
        end = _cpu_times()
        if self._start is None or end is None or end[1] == self._start[1]:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        busy_s = (end[0] - self._start[0]) / ticks
        total_s = (end[1] - self._start[1]) / ticks
        others = busy_s - (_own_cpu_seconds() - self._own_start)
        return max(0.0, others / total_s)
