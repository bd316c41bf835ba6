"""One measurement: the load generator against a target, and the target's costs around it.

Contract: :func:`measure` runs the load generator against ``url``: ``wrk`` with the
workload's stream (:mod:`bench.loadgen`; a warm-up run, then the measured run, the window
being the measured run's whole life) or :mod:`bench.httpload` in its own process (the window
it marks on stdout). With ``cores`` = (servers' cores, generator's cores) every watched
process is pinned onto the first set and the generator runs on the second. At the moment the
window opens and again when it closes it samples every watched process
(``/proc/<pid>/stat``: utime + stime) and, for a daxproxy, ``GET /admin/caches`` and
``GET /metrics``; after the window it reads each watched process's VmRSS. It returns one
JSON-ready dict, a *sample*:

- ``workload``, ``target``, ``connections``, ``requests``, ``seconds``, ``rps``,
  ``items_per_s`` (requests/s times the items one read returns);
- ``latency``: per class (``all``, ``hit``, ``miss``, ``bypass``, ``write``, ``none``, those
  seen) ``count`` and ``p50_us`` ``p90_us`` ``p99_us`` ``p999_us`` ``mean_us`` ``max_us``;
- ``errors`` by kind and ``error_count``; ``timeline`` (answers per class per bucket);
- ``hit_ratio``: hits over labelled reads (hit + miss + bypass), None without labels;
- ``upstream``: ``requests`` the proxy sent upstream during the window and ``source``:
  ``metrics`` (counted by the proxy's ``/metrics``, every upstream call) or ``labels``
  (estimated as the answers not labelled hit: exact but for concurrent misses of one key,
  which share one call), then ``saved`` = requests - upstream requests and
  ``saved_fraction``; None for a target that is not a daxproxy;
- ``cpu``: per watched role (``server``: the target itself; ``upstream``: the server behind
  a daxproxy) CPU seconds over the window and per 1,000 requests; ``rss_bytes`` likewise;
- ``caches``: the change in ``/admin/caches``' hits and misses over the window, and the
  entries and bytes at its end (item and query cache);
- ``loadgen``: ``generator`` (``wrk`` or ``httpload``), its CPU seconds, that as a fraction
  of one core, and ``bound`` (at or above :data:`LOADGEN_BOUND`: the generator, not the
  target, may have set the pace); ``pinned``: whether generator and servers had cores apart.
  With wrk a ``latency`` class other than ``all`` holds percentiles only when it is every
  answer (else its count alone), and the timeline is empty.

:class:`MeasureError` when the generator fails or overruns its time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import loadgen
from bench.httpload import RESULT_MARKER, WINDOW_MARKER
from bench.processes import die_with_parent
from bench.workloads import Workload

REPO_ROOT = Path(__file__).resolve().parents[1]
# A generator using this much of one core may be what limits the request rate.
LOADGEN_BOUND = 0.9
REQUEST_TIMEOUT_S = 5.0
# Start-up (building the request stream) and wind-down past warm-up + duration.
_GRACE_S = 60.0
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_UPSTREAM_SERIES = (
    "daxproxy_upstream_request_duration_seconds_count",
    "daxproxy_upstream_failures_total",
)
Sample = dict[str, Any]
HTTPLOAD, WRK = "httpload", loadgen.WRK
GENERATORS = (WRK, HTTPLOAD)
Cores = tuple[set[int], set[int]] | None


class MeasureError(RuntimeError):
    pass


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process, in seconds; None when it cannot be read."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _get(url: str, path: str) -> bytes | None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5.0)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
        return body if answer.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


def admin_caches(url: str) -> dict[str, Any] | None:
    body = _get(url, "/admin/caches")
    with contextlib.suppress(ValueError):
        return json.loads(body) if body else None
    return None


def upstream_requests(url: str) -> int | None:
    """Upstream calls the proxy made (answered or failed), from its /metrics, if it has them."""
    body = _get(url, "/metrics")
    if body is None:
        return None
    total, seen = 0.0, False
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(_UPSTREAM_SERIES):
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
    return round(total) if seen else None


def _snapshot(pids: dict[str, int | None], proxy_url: str | None) -> dict[str, Any]:
    return {
        "cpu": {role: cpu_seconds(pid) for role, pid in pids.items()},
        "caches": admin_caches(proxy_url) if proxy_url else None,
        "upstream": upstream_requests(proxy_url) if proxy_url else None,
    }


def _command(
    url: str, workload: Workload, *, connections: int, duration: float, warmup: float, bucket: float
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.httpload",
        f"--url={url}",
        f"--workload={json.dumps(workload.to_json())}",
        f"--connections={connections}",
        f"--duration={duration}",
        f"--warmup={warmup}",
        f"--timeout={REQUEST_TIMEOUT_S}",
        f"--bucket-ms={bucket * 1000}",
    ]


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The generator's stdout, line by line, read on a thread; None at its end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def run_generator(
    command: list[str],
    deadline_s: float,
    on_window: dict[str, Any],
    sample_at: Callable[[str], Any],
    log: Path,
) -> dict[str, Any]:
    """Run the generator; call ``sample_at(mark)`` at each window mark; its result. Its
    stderr goes to ``log``, quoted when it fails."""
    with log.open("w") as errors:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        try:
            lines = _lines(process)
            result: dict[str, Any] | None = None
            while True:
                try:
                    line = lines.get(timeout=deadline_s)
                except queue.Empty:
                    raise MeasureError(f"the load generator ran past {deadline_s:g} s") from None
                if line is None:
                    break
                if line.startswith(WINDOW_MARKER):
                    mark = line[len(WINDOW_MARKER) :].strip()
                    on_window[mark] = sample_at(mark)
                elif line.startswith(RESULT_MARKER):
                    result = json.loads(line[len(RESULT_MARKER) :])
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if code != 0 or result is None:
        tail = log.read_text(errors="replace")[-2000:]
        raise MeasureError(f"the load generator exited with {code}:\n{tail}")
    return result


def measure(
    url: str,
    workload: Workload,
    *,
    target: str,
    connections: int,
    duration: float,
    warmup: float,
    pids: dict[str, int | None],
    log_dir: Path,
    proxy_url: str | None = None,
    bucket_s: float = 0.1,
    generator: str = HTTPLOAD,
    cores: Cores = None,
    wrk_threads: int = 1,
    upstream_apart: bool = False,
) -> Sample:
    """``upstream_apart``: the ``upstream`` of ``pids`` is pinned with the generator."""
    if cores is not None:
        for role, pid in pids.items():
            loadgen.pin(pid, cores[1] if upstream_apart and role == "upstream" else cores[0])
    generator_cores = None if cores is None else cores[1]
    marks: dict[str, Any] = {}
    if generator == WRK:
        result = _run_wrk(
            url,
            workload,
            connections=connections,
            duration=duration,
            warmup=warmup,
            log_dir=log_dir,
            cores=generator_cores,
            threads=wrk_threads,
            snapshot=lambda: _snapshot(pids, proxy_url),
            marks=marks,
        )
    else:
        command = _command(
            url,
            workload,
            connections=connections,
            duration=duration,
            warmup=warmup,
            bucket=bucket_s,
        )
        result = run_generator(
            loadgen.pinned(command, generator_cores),
            duration + warmup + _GRACE_S,
            marks,
            lambda _mark: _snapshot(pids, proxy_url),
            log_dir / "httpload.log",
        )
        result["generator"] = HTTPLOAD
    if set(marks) != {"start", "end"}:
        raise MeasureError("the load generator did not mark its measured window")
    rss = {role: rss_bytes(pid) for role, pid in pids.items()}
    sample = build_sample(
        workload,
        target,
        connections,
        result,
        marks=marks,
        rss=rss,
        is_proxy=proxy_url is not None,
    )
    sample["loadgen"]["pinned"] = cores is not None
    return sample


def wrk_seconds(seconds: float) -> int:
    """wrk takes whole seconds: at least one."""
    return max(1, math.ceil(seconds - 1e-9))


def _run_wrk(
    url: str,
    workload: Workload,
    *,
    connections: int,
    duration: float,
    warmup: float,
    log_dir: Path,
    cores: set[int] | None,
    threads: int,
    snapshot: Callable[[], Any],
    marks: dict[str, Any],
) -> dict[str, Any]:
    host = urlsplit(url).netloc
    stream_file = loadgen.write_stream(workload, host, log_dir / f"stream-{workload.name}.txt")
    threads = max(1, min(threads, connections))
    if warmup > 0:
        loadgen.run_wrk(
            url,
            stream_file,
            seconds=wrk_seconds(warmup),
            connections=connections,
            threads=threads,
            cores=cores,
        )
    marks["start"] = snapshot()
    result = loadgen.run_wrk(
        url,
        stream_file,
        seconds=wrk_seconds(duration),
        connections=connections,
        threads=threads,
        cores=cores,
    )
    marks["end"] = snapshot()
    return result


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else max(0.0, after - before)


def _cache_change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("item_cache", "query_cache"):
        old = (before or {}).get(name) or {}
        new = (after or {}).get(name) or {}
        if not new:
            continue
        changes[name.removesuffix("_cache")] = {
            "hits": new.get("hits", 0) - old.get("hits", 0),
            "misses": new.get("misses", 0) - old.get("misses", 0),
            "entries": new.get("entries"),
            "bytes": new.get("bytes"),
        }
    return changes


def build_sample(
    workload: Workload,
    target: str,
    connections: int,
    result: dict[str, Any],
    *,
    marks: dict[str, Any],
    rss: dict[str, int | None],
    is_proxy: bool,
) -> Sample:
    """The sample's dict from the generator's result and the two snapshots (pure)."""
    requests = int(result["requests"])
    latency = result["latency"]
    counts = {k: int(v["count"]) for k, v in latency.items() if k != "all"}
    labelled = sum(counts.get(k, 0) for k in ("hit", "miss", "bypass"))
    hits = counts.get("hit", 0)
    start, end = marks["start"], marks["end"]
    cpu = {}
    for role in start["cpu"]:
        spent = _delta(start["cpu"][role], end["cpu"][role])
        cpu[role] = {
            "seconds": spent,
            "seconds_per_1k": None if spent is None or not requests else spent / requests * 1000,
        }
    upstream = None
    if is_proxy:
        counted = _delta(start["upstream"], end["upstream"])
        if counted is not None:
            sent, source = round(counted), "metrics"
        else:
            sent, source = requests - hits, "labels"
        saved = max(0, requests - sent)
        upstream = {
            "requests": sent,
            "source": source,
            "saved": saved,
            "saved_fraction": saved / requests if requests else None,
        }
    errors = {k: int(v) for k, v in result["errors"].items()}
    fraction = float(result["loadgen_cpu_fraction"])
    labels = result.get("labels")
    return {
        "workload": workload.name,
        "target": target,
        "connections": connections,
        "requests": requests,
        "seconds": float(result["seconds"]),
        "rps": float(result["rps"]),
        "items_per_s": float(result["rps"]) * workload.items_per_read,
        "latency": latency,
        "errors": errors,
        "error_count": sum(errors.values()),
        "timeline": result["timeline"],
        "labels": labels,
        "hit_ratio": hits / labelled if labelled else None,
        "upstream": upstream,
        "cpu": cpu,
        "rss_bytes": rss,
        "caches": _cache_change(start["caches"], end["caches"]) if is_proxy else {},
        "loadgen": {
            "generator": result.get("generator", HTTPLOAD),
            "cpu_s": float(result["loadgen_cpu_s"]),
            "cpu_fraction": fraction,
            "bound": fraction >= LOADGEN_BOUND,
        },
    }
