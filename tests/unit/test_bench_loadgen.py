"""bench.loadgen: the stream file wrk's script reads, and wrk's figures in the bench's shape."""

from __future__ import annotations

from pathlib import Path

from bench import loadgen, plan
from bench.workloads import CATALOGUE, READ, WRITE, stream

_RAW = {
    "requests": 1000,
    "seconds": 2.0,
    "rps": 500.0,
    "p50_us": 100,
    "p90_us": 200,
    "p99_us": 300,
    "p999_us": 400,
    "mean_us": 120.0,
    "max_us": 500,
    "errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0},
}


def test_the_stream_file_holds_the_workloads_own_requests_in_order(tmp_path: Path) -> None:
    workload = CATALOGUE["mix-80-20"].with_options(items=50)
    path = loadgen.write_stream(workload, "127.0.0.1:1", tmp_path / "stream.txt")
    data = path.read_bytes()
    first, rest = data.split(b"\n", 1)
    distinct, length = map(int, first.split())
    requests: list[tuple[int, bytes]] = []
    for _ in range(distinct):
        head, rest = rest.split(b"\n", 1)
        kind, size = map(int, head.split())
        requests.append((kind, rest[:size]))
        rest = rest[size:]
    order = [int(n) for n in rest.split()]
    assert len(order) == length
    assert [requests[n - 1] for n in order] == stream(workload, "127.0.0.1:1")
    assert {kind for kind, _ in requests} == {READ, WRITE}


def test_a_forward_mix_sends_consistent_reads_where_a_mix_sends_writes() -> None:
    forward = stream(CATALOGUE["forward-95-5"].with_options(items=50), "127.0.0.1:1", 4000)
    mix = stream(CATALOGUE["mix-95-5"].with_options(items=50), "127.0.0.1:1", 4000)
    consistent = [body for kind, body in forward if b'"ConsistentRead":true' in body]
    assert {kind for kind, _ in forward} == {READ}
    assert 0.03 < len(consistent) / len(forward) < 0.07
    assert all(b"DynamoDB_20120810.GetItem" in body for _, body in forward)
    assert not any(b"ConsistentRead" in body for _, body in mix)
    assert WRITE in {kind for kind, _ in mix}


def test_one_outcome_is_timed_as_all_answers() -> None:
    raw = {**_RAW, "labels": {"hit": 1000}, "writes_sent": 0}
    result = loadgen.as_result(raw, cpu_s=1.0)
    assert result["latency"]["hit"] == {**result["latency"]["all"], "count": 1000}
    assert result["loadgen_cpu_fraction"] == 0.5
    assert result["errors"] == {"status": 2, "timeout": 0, "dropped": 1, "connect": 0}


def test_mixed_outcomes_are_counted_not_timed() -> None:
    raw = {**_RAW, "labels": {"hit": 900, "miss": 40, "none": 60}, "writes_sent": 55}
    latency = loadgen.as_result(raw, cpu_s=0.5)["latency"]
    assert latency["hit"] == {"count": 900}
    assert latency["miss"] == {"count": 40}
    assert latency["write"] == {"count": 55}
    assert latency["none"] == {"count": 5}
    assert latency["all"]["p50_us"] == 100


def test_cores_apart() -> None:
    assert loadgen.cpu_split(1) is None
    split = loadgen.cpu_split()
    if split is not None:
        servers, generator = split
        assert servers and generator and not servers & generator
    assert loadgen.pinned(["wrk"], None) == ["wrk"]


def test_the_quick_set_has_every_measure_issue_13_asks_for() -> None:
    steps = plan.build(plan.SETS["quick"])
    pairs = {(s.workload.name, s.target) for s in steps}
    for target in ("direct", "proxy", "constant", "constant-fast"):
        assert ("read-zipf", target) in pairs
    assert {("passthrough", "direct"), ("passthrough", "proxy")} <= pairs
    assert ("passthrough", "constant") not in pairs
    assert {("batch-100", "proxy"), ("query", "proxy"), ("mix-95-5", "direct")} <= pairs
    sweep = next(s for s in steps if (s.workload.name, s.target) == ("read-zipf", "proxy"))
    assert 1 in sweep.connections and 32 in sweep.connections
    for target in ("direct", "proxy"):  # a forward alone, and forwards sharing the loop
        alone = next(s for s in steps if (s.workload.name, s.target) == ("passthrough", target))
        assert alone.connections == (1, 32)
    mix = next(s for s in steps if (s.workload.name, s.target) == ("mix-95-5", "proxy"))
    assert mix.connections == (32,)
