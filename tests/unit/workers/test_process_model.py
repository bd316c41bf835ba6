"""The pure parts of the workers: what ``auto`` means, the port, the summed figures, the
answer header. The processes themselves are tested in tests/integration/test_workers.py."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daxproxy.core import wire
from daxproxy.core.config import Settings
from daxproxy.edge import answers
from daxproxy.edge.cli import main
from daxproxy.service.metrics import Metrics
from daxproxy.workers.cpus import cgroup_quota, usable_cpus, worker_count
from daxproxy.workers.figures import metric_families
from daxproxy.workers.listeners import reserve
from daxproxy.workers.totals import MetricTotals, cache_totals

# --- auto: affinity and the cgroup quota -----------------------------------------------


def cgroups(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake /proc/self/cgroup and /sys/fs/cgroup."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(membership)
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc, root


def cpus(tmp_path: Path, membership: str, files: dict[str, str], affinity: int = 8) -> int:
    proc, root = cgroups(tmp_path, membership, files)
    return usable_cpus(lambda: affinity, proc, root)


def test_without_a_quota_auto_is_the_affinity_mask(tmp_path: Path) -> None:
    assert cpus(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"}) == 8
    assert cpus(tmp_path, "0::/\n", {}, affinity=3) == 3
    assert usable_cpus(lambda: 5, tmp_path / "absent", tmp_path) == 5


def test_a_v2_quota_caps_auto_rounding_up(tmp_path: Path) -> None:
    assert cpus(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"}) == 2
    assert cpus(tmp_path, "0::/\n", {"cpu.max": "150000 100000\n"}) == 2
    assert cpus(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"}) == 1
    # The affinity mask is smaller than the quota: the mask wins.
    assert cpus(tmp_path, "0::/\n", {"cpu.max": "400000 100000\n"}, affinity=2) == 2


def test_the_smallest_quota_of_the_cgroup_and_those_above_it_wins(tmp_path: Path) -> None:
    files = {
        "kubepods/cpu.max": "300000 100000",
        "kubepods/pod1/cpu.max": "max 100000",
        "kubepods/pod1/app/cpu.max": "600000 100000",
    }
    assert cpus(tmp_path, "0::/kubepods/pod1/app\n", files) == 3


def test_a_namespaced_cgroup_reads_the_mount_root(tmp_path: Path) -> None:
    # In a container, /proc/self/cgroup may name a path the container's mount does not have.
    assert cpus(tmp_path, "0::/docker/abc\n", {"cpu.max": "100000 100000"}) == 1


def test_a_v1_cfs_quota_caps_auto(tmp_path: Path) -> None:
    membership = "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n"
    files = {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    }
    assert cpus(tmp_path, membership, files) == 3
    no_quota = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert cpus(tmp_path / "b", "1:cpu:/\n", no_quota) == 8


def test_unreadable_quota_files_are_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(*cgroups(tmp_path, "0::/\n", {"cpu.max": "lots 100000"})) is None
    assert cgroup_quota(*cgroups(tmp_path / "b", "0::/\n", {"cpu.max": ""})) is None


def test_worker_count_is_the_setting_or_the_usable_cpus() -> None:
    assert worker_count(Settings(workers=3)) == 3
    assert worker_count(Settings(workers="auto")) == usable_cpus()


# --- the port --------------------------------------------------------------------------


def test_a_taken_port_fails_as_a_single_process_fails() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(OSError) as caught:
        reserve("127.0.0.1", taken.getsockname()[1])
    assert caught.value.errno == errno.EADDRINUSE


def test_another_proxy_of_workers_on_the_port_is_a_taken_port() -> None:
    reservation = reserve("127.0.0.1", 0)
    with _listener(reservation.port), pytest.raises(OSError):
        reserve("127.0.0.1", reservation.port)
    reservation.close()


def test_workers_listen_on_the_reserved_port_and_only_they_get_connections() -> None:
    reservation = reserve("127.0.0.1", 0)
    try:
        assert reservation.port != 0
        with _listener(reservation.port) as first, _listener(reservation.port) as second:
            accepted = 0
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", reservation.port), timeout=2):
                    pass
            for listener in (first, second):
                listener.setblocking(False)
                while True:
                    try:
                        listener.accept()[0].close()
                    except BlockingIOError:
                        break
                    accepted += 1
            assert accepted == 20  # none went to the supervisor's bound socket
    finally:
        reservation.close()


def _listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


# --- the summed figures ----------------------------------------------------------------


def worker_metrics(requests: int, cache_bytes: int = 0) -> list[Any]:
    metrics = Metrics()
    for _ in range(requests):
        metrics.record("http", "GetItem", "hit", 200, None, table=None, seconds=0.0001)
    metrics.breaker_changed(is_open=requests > 5)
    families = metric_families(metrics.registry)
    if cache_bytes:
        families.append(
            [
                "daxproxy_cache_bytes",
                "gauge",
                "b",
                [["daxproxy_cache_bytes", {"cache": "item"}, cache_bytes]],
            ]
        )
        families.append(
            [
                "daxproxy_cache_max_bytes",
                "gauge",
                "m",
                [["daxproxy_cache_max_bytes", {"cache": "item"}, 100]],
            ]
        )
        families.append(
            [
                "daxproxy_cache_memory_utilization_ratio",
                "gauge",
                "r",
                [["daxproxy_cache_memory_utilization_ratio", {"cache": "item"}, cache_bytes / 100]],
            ]
        )
    return families


def samples(totals: MetricTotals) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = totals.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


GETS = ("daxproxy_requests_total", (("operation", "GetItem"), ("protocol", "http")))
HIT_COUNT = (
    "daxproxy_request_duration_seconds_count",
    (("cache", "hit"), ("operation", "GetItem"), ("protocol", "http")),
)


def test_counters_and_histograms_are_summed_over_the_workers() -> None:
    totals = MetricTotals()
    totals.update(1, worker_metrics(3))
    totals.update(2, worker_metrics(4))
    found = samples(totals)
    assert found[GETS] == 7 and found[HIT_COUNT] == 7
    bucket = (
        "daxproxy_request_duration_seconds_bucket",
        (("cache", "hit"), ("le", "0.0001"), ("operation", "GetItem"), ("protocol", "http")),
    )
    assert found[bucket] == 7


def test_build_info_and_the_breaker_take_the_largest_value() -> None:
    totals = MetricTotals()
    totals.update(1, worker_metrics(3))  # breaker closed
    totals.update(2, worker_metrics(6))  # breaker open
    found = samples(totals)
    assert found["daxproxy_build_info", (("version", _version()),)] == 1
    assert found["daxproxy_upstream_breaker_open", ()] == 1


def test_the_utilization_ratio_is_the_summed_bytes_over_the_summed_budgets() -> None:
    totals = MetricTotals()
    totals.update(1, worker_metrics(1, cache_bytes=10))
    totals.update(2, worker_metrics(1, cache_bytes=30))
    found = samples(totals)
    assert found["daxproxy_cache_bytes", (("cache", "item"),)] == 40
    assert found["daxproxy_cache_memory_utilization_ratio", (("cache", "item"),)] == 0.2


def test_a_dead_workers_counts_are_kept_and_its_gauges_dropped() -> None:
    totals = MetricTotals()
    totals.update(1, worker_metrics(3))
    totals.update(2, worker_metrics(4, cache_bytes=30))
    before = samples(totals)[GETS]
    totals.retire(2)
    totals.update(2, worker_metrics(1))  # the new worker 2 starts from zero
    found = samples(totals)
    assert found[GETS] == 8 >= before
    assert ("daxproxy_cache_bytes", (("cache", "item"),)) not in found
    totals.retire(2)
    totals.retire(2)  # a worker that died before it was read adds nothing
    assert samples(totals)[GETS] == 8


def test_the_supervisors_own_series_come_after_the_workers() -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily

    workers = GaugeMetricFamily("daxproxy_workers", "w")
    workers.add_metric([], 2)
    totals = MetricTotals()
    totals.update(1, worker_metrics(1))
    assert b"\ndaxproxy_workers 2.0\n" in totals.exposition([workers])


def _version() -> str:
    from daxproxy import __version__

    return __version__


def stats(entries: int, hits: int, misses: int, tables: list[str]) -> dict[str, Any]:
    cache = {
        "entries": entries,
        "bytes": entries * 10,
        "max_bytes": 1000,
        "hits": hits,
        "misses": misses,
        "hit_rate": None,
        "ttl_millis": 300000,
        "evicted": {"size": 1, "ttl": 0},
        "evicted_bytes": 5,
        "tracked_tables": 1,
    }
    return {"mode": "dax", "item_cache": cache, "query_cache": None, "tables": tables}


def test_the_admin_view_totals_each_cache_and_lists_each_worker() -> None:
    view = cache_totals({2: stats(3, 1, 1, ["b"]), 1: stats(1, 2, 0, ["a", "b"])})
    assert view["workers"] == 2 and view["mode"] == "dax"
    assert view["tables"] == ["a", "b"] and view["query_cache"] is None
    item = view["item_cache"]
    assert (item["entries"], item["bytes"], item["max_bytes"]) == (4, 40, 2000)
    assert (item["hits"], item["misses"], item["hit_rate"]) == (3, 1, 0.75)
    assert item["evicted"] == {"size": 2, "ttl": 0} and item["evicted_bytes"] == 10
    assert [w["worker"] for w in view["per_worker"]] == [1, 2]
    assert view["per_worker"][1]["item_cache"]["entries"] == 3


# --- the answer header -----------------------------------------------------------------


def test_a_worker_labels_every_answer_with_its_number() -> None:
    answer = wire.json_response(b"{}")
    assert b"x-daxproxy-worker" not in answers.encode(answer, close=False)[0]
    try:
        answers.label_worker(2)
        head = answers.encode(answer, close=False)[0]
        assert b"\r\nx-daxproxy-worker: 2\r\n" in head
        assert b"\r\nx-daxproxy-worker: 2\r\n" in answers.encode(answer, close=True)[0]
    finally:
        answers._CLOCK.fixed = ""
        answers._CLOCK.second = -1


# --- start-up failures: today's messages and exit codes ---------------------------------


def test_with_workers_a_taken_port_exits_2_with_todays_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["--workers", "2", "--port", str(port), "--upstream", "http://127.0.0.1:9"]
        assert main(argv, {}) == 2
    assert f"daxproxy cannot listen on 127.0.0.1:{port}: Address already in use" in (
        capsys.readouterr().err
    )


def test_with_workers_a_bad_tls_file_exits_2_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.pem")
    argv = ["--workers", "2", "--tls-cert-file", missing, "--tls-key-file", missing]
    assert main([*argv, "--port", "0", "--upstream", "http://127.0.0.1:9"], {}) == 2
    assert "daxproxy cannot start: setting 'tls_cert_file': cannot read" in capsys.readouterr().err


def test_a_bad_workers_value_exits_2_naming_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--workers", "none"], {}) == 2
    assert "setting 'workers': must be a whole number from 1 to 1024 or 'auto', not 'none'" in (
        capsys.readouterr().err
    )


# --- the bench's lag quantiles ----------------------------------------------------------


def test_the_bench_interpolates_quantiles_within_buckets_as_prometheus_does() -> None:
    from bench.workers import quantile

    buckets = [(0.0001, 50.0), (0.001, 90.0), (0.01, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.0001)
    assert quantile(0.7, buckets) == pytest.approx(0.0001 + 0.0009 * 20 / 40)
    assert quantile(0.99, buckets) == pytest.approx(0.001 + 0.009 * 9 / 10)
    assert quantile(0.5, [(float("inf"), 0.0)]) is None
    assert quantile(0.5, [(0.001, 0.0), (float("inf"), 4.0)]) == 0.001
