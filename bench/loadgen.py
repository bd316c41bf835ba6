"""Runs one measurement with wrk, or with the Python fallback when wrk is missing.

Contract: :func:`choose` names the generator (``wrk`` when it is on PATH, unless told
otherwise); :func:`measure` runs it against a URL with one of the benchmark's requests
(GetItem unless told otherwise) for a whole number of seconds and returns a
:class:`Measurement`, or raises :class:`LoadError` with the generator's output. Each run
is a separate process bounded by a timeout; Ctrl-C kills it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pyload import RESULT_MARKER
from bench.workload import GET_ITEM, Request

WRK = "wrk"
PYTHON = "python"
LUA_SCRIPT = Path(__file__).with_name("getitem.lua")
REPO_ROOT = Path(__file__).resolve().parents[1]
# A request with no answer after this long counts as a timeout, in wrk and in the fallback.
REQUEST_TIMEOUT_S = 5
# Slack past the run's duration before the generator is killed: start-up and reporting.
_GRACE_S = 30

PYTHON_WARNING = (
    "WARNING: the load comes from the Python fallback (python -m bench.pyload), {why}. It is "
    "an aiohttp client on the same {cores} cores as the server under test: it measures itself "
    "as much as the server, and its numbers are lower bounds that cannot be compared with "
    "wrk's. Install wrk (apt-get install wrk) for real ones."
)


def python_warning(requested: str, cores: int | None) -> str:
    why = "as --loadgen python asked" if requested == PYTHON else "because wrk is not installed"
    return PYTHON_WARNING.format(why=why, cores=cores or "?")


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Load:
    """How hard to push: the same for every target of a run."""

    connections: int
    threads: int


@dataclass(frozen=True, slots=True)
class Measurement:
    requests: int
    seconds: float
    rps: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    mean_us: float
    max_us: int
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Measurement:
        """From the JSON object of a ``BENCH_RESULT`` line."""
        return cls(
            requests=int(result["requests"]),
            seconds=float(result["seconds"]),
            rps=float(result["rps"]),
            p50_us=int(result["p50_us"]),
            p90_us=int(result["p90_us"]),
            p99_us=int(result["p99_us"]),
            p999_us=int(result["p999_us"]),
            mean_us=float(result["mean_us"]),
            max_us=int(result["max_us"]),
            errors={
                k.removeprefix("errors_"): int(v)
                for k, v in result.items()
                if k.startswith("errors_")
            },
        )


def choose(requested: str) -> str:
    """``wrk`` or ``python``; ``auto`` is wrk when it is installed."""
    if requested == "auto":
        return WRK if shutil.which(WRK) else PYTHON
    if requested == WRK and not shutil.which(WRK):
        raise LoadError("--loadgen wrk, but wrk is not on PATH")
    return requested


def wrk_version() -> str:
    """wrk's own version line, e.g. ``wrk debian/4.1.0-3+b2 [epoll]``."""
    done = subprocess.run([WRK, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"


def wrk_command(url: str, seconds: int, load: Load, request: Request = GET_ITEM) -> list[str]:
    headers = [f"{name}: {value}" for name, value in request.headers]
    return [
        WRK,
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={seconds}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        f"--script={LUA_SCRIPT}",
        url,
        "--",
        request.body,
        *headers,
    ]


def python_command(url: str, seconds: int, load: Load, request: Request = GET_ITEM) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.pyload",
        f"--url={url}",
        f"--connections={load.connections}",
        f"--duration={seconds}",
        f"--timeout={REQUEST_TIMEOUT_S}",
        f"--request={request.name}",
    ]


def measure(
    generator: str, url: str, seconds: int, load: Load, request: Request = GET_ITEM
) -> Measurement:
    build = wrk_command if generator == WRK else python_command
    command = build(url, seconds, load, request)
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=seconds + _GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LoadError(f"{generator} did not finish within {seconds + _GRACE_S} s") from None
    if done.returncode != 0:
        raise LoadError(f"{generator} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return parse(done.stdout, generator)


def parse(output: str, generator: str) -> Measurement:
    """The measurement in the generator's ``BENCH_RESULT {json}`` line."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            return Measurement.from_result(json.loads(line[len(RESULT_MARKER) :]))
    raise LoadError(f"{generator} printed no {RESULT_MARKER.strip()} line:\n{output}")
