"""wrk as ``bench.run``'s load generator, with the workloads' own request streams; and the
CPU pinning that keeps generator and servers apart.

Contract: :func:`write_stream` writes a workload's seeded request stream
(:func:`bench.workloads.stream`: Zipf keys, PutItems, batches, Query pages; the very bytes
:mod:`bench.httpload` sends) to a file in the format ``bench/stream.lua`` reads.
:func:`run_wrk` runs ``wrk`` with that script for a whole number of seconds and returns a
generator *result* in :mod:`bench.httpload`'s shape (requests, seconds, rps, ``latency``,
``errors``, ``timeline``, ``loadgen_cpu_s`` and ``loadgen_cpu_fraction``), plus ``labels``
(answers per ``x-daxproxy-cache`` label) and ``generator: "wrk"``. wrk's histogram is one
for all answers: ``latency["all"]`` has its percentiles; an outcome's entry has them too only
when that outcome is every answer (a warm read workload: all hits), else its count alone.
Writes are the PutItems sent (the proxy labels none), so their count can be off by the
requests in flight at the end. :class:`LoadError` when wrk fails or overruns.
:func:`cpu_split` picks the cores: the generator gets the last one, the servers the others
(none with fewer than 2 cores); :func:`pin` moves every thread of a process onto a set of
cores; :func:`pinned` prefixes a command with ``taskset``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.workloads import Workload, stream

WRK = "wrk"
LUA_SCRIPT = Path(__file__).with_name("stream.lua")
REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_MARKER = "BENCH_RESULT "
# A request with no answer after this long counts as a timeout, as in bench.httpload.
REQUEST_TIMEOUT_S = 5
# Slack past the run's duration before wrk is killed: start-up (reading the stream file).
_GRACE_S = 60
LABELS = ("hit", "miss", "bypass", "stale", "none")


class LoadError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which(WRK) is not None


def wrk_version() -> str:
    """wrk's own version line, e.g. ``wrk debian/4.1.0-3+b2 [epoll]``."""
    done = subprocess.run([WRK, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"


def write_stream(workload: Workload, host: str, path: Path) -> Path:
    """The workload's stream as ``stream.lua`` reads it: distinct requests, then the order."""
    numbers: dict[bytes, int] = {}
    kinds: list[int] = []
    order: list[int] = []
    for kind, payload in stream(workload, host):
        number = numbers.get(payload)
        if number is None:
            number = numbers[payload] = len(numbers) + 1
            kinds.append(kind)
        order.append(number)
    with path.open("wb") as out:
        out.write(f"{len(numbers)} {len(order)}\n".encode())
        for (payload, _), kind in zip(numbers.items(), kinds, strict=True):
            out.write(f"{kind} {len(payload)}\n".encode())
            out.write(payload)
        out.write(" ".join(map(str, order)).encode() + b"\n")
    return path


def cpu_split(cores: int | None = None) -> tuple[set[int], set[int]] | None:
    """(servers' cores, generator's cores), or None with fewer than two usable cores."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cores is not None:
        usable = usable[:cores]
    if len(usable) < 2:
        return None
    return set(usable[:-1]), {usable[-1]}


def pin(pid: int | None, cores: set[int]) -> None:
    """Every thread of the process onto ``cores`` (a node server has several)."""
    if pid is None or not hasattr(os, "sched_setaffinity"):
        return
    tasks = [int(t) for t in _tasks(pid)] or [pid]
    for task in tasks:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(task, cores)


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def pinned(command: list[str], cores: set[int] | None) -> list[str]:
    if not cores or not shutil.which("taskset"):
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(cores))), *command]


def wrk_command(
    url: str, seconds: int, connections: int, threads: int, stream_file: Path
) -> list[str]:
    return [
        WRK,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        f"--script={LUA_SCRIPT}",
        url,
        "--",
        str(stream_file),
    ]


def run_wrk(
    url: str,
    stream_file: Path,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    cores: set[int] | None = None,
) -> dict[str, Any]:
    command = pinned(wrk_command(url, seconds, connections, threads, stream_file), cores)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
        raise LoadError(f"wrk did not finish within {seconds + _GRACE_S} s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise LoadError(f"wrk exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return as_result(parse(done.stdout), cpu)


def parse(output: str) -> dict[str, Any]:
    """The JSON object of wrk's ``BENCH_RESULT`` line."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            return dict(json.loads(line[len(RESULT_MARKER) :]))
    raise LoadError(f"wrk printed no {RESULT_MARKER.strip()} line:\n{output}")


def as_result(raw: dict[str, Any], cpu_s: float) -> dict[str, Any]:
    """wrk's figures in bench.httpload's result shape (pure)."""
    requests = int(raw["requests"])
    seconds = float(raw["seconds"])
    figures = {k: raw[k] for k in ("p50_us", "p90_us", "p99_us", "p999_us", "mean_us", "max_us")}
    everything = {"count": requests, **figures}
    labels = {k: int(raw["labels"].get(k, 0)) for k in LABELS}
    writes = min(int(raw.get("writes_sent", 0)), labels["none"])
    classes = {**labels, "none": labels["none"] - writes, "write": writes}
    latency: dict[str, Any] = {"all": everything}
    seen = [name for name, count in classes.items() if count]
    for name in seen:
        # Timed apart only when this class is every answer (wrk has one histogram).
        latency[name] = (
            {**everything, "count": classes[name]} if len(seen) == 1 else {"count": classes[name]}
        )
    errors = raw["errors"]
    return {
        "generator": WRK,
        "requests": requests,
        "seconds": seconds,
        "rps": float(raw["rps"]),
        "latency": latency,
        "labels": labels,
        "errors": {
            "status": int(errors["status"]),
            "timeout": int(errors["timeout"]),
            "dropped": int(errors["read"]) + int(errors["write"]),
            "connect": int(errors["connect"]),
        },
        "timeline": {"bucket_s": 0.0, "counts": {}},
        "loadgen_cpu_s": round(cpu_s, 4),
        "loadgen_cpu_fraction": round(cpu_s / seconds, 4) if seconds > 0 else 0.0,
    }
