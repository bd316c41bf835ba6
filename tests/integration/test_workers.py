"""``--workers 2`` as users run it: one supervisor, two worker processes on one port.

One multi-worker proxy (with its embedded moto, which both workers share) serves most
tests of this module; a test that stops its proxy starts its own. Connections are fresh
for every request (:func:`call`), so the kernel spreads them over the workers, and each
answer's ``x-daxproxy-worker`` says which one served it. Waits are bounded polls of the
log or of ``/metrics``, never fixed sleeps.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daxproxy.service.embedded import MotoServer, free_port
from tests.integration.harness import TEST_ENV, ProxyProcess, get
from tests.integration.holding import HoldingRelay

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT, signals")

WORKERS = {1, 2}
ATTEMPTS = 300  # fresh connections tried before deciding one worker never gets any
WAIT = 30.0  # seconds, for what takes a process start on a loaded machine
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return found


def start_workers(*options: str, **kwargs: Any) -> ProxyProcess:
    proxy = ProxyProcess("--workers", "2", *options, **kwargs)
    proxy.start()
    wait_for(lambda: "with 2 workers" in proxy.log(), "the supervisor did not say it serves")
    return proxy


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyProcess]:
    proxy = start_workers("--admin", "--log-requests", "--mode", "strict")
    try:
        yield proxy
    finally:
        assert proxy.stop() == 0, proxy.log()
        os.unlink(proxy.log_path)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.worker = int(headers["x-daxproxy-worker"])

    def json(self) -> Any:
        return json.loads(self.body)


def post(
    address: str, operation: str, payload: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One DynamoDB request to ``address`` (host:port) on a connection of its own: the
    status, the headers (lower-case names) and the body."""
    connection = http.client.HTTPConnection(address, timeout=10)
    try:
        connection.request(
            "POST",
            "/",
            body=json.dumps(payload),
            headers={
                "X-Amz-Target": f"DynamoDB_20120810.{operation}",
                "Content-Type": "application/x-amz-json-1.0",
                **headers,
            },
        )
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def call(proxy: ProxyProcess, operation: str, payload: dict[str, Any]) -> Answer:
    """One DynamoDB request through the proxy on a connection of its own (no keep-alive)."""
    return Answer(*post(f"127.0.0.1:{proxy.port}", operation, payload, Connection="close"))


def on_each_worker(
    proxy: ProxyProcess, operation: str, payload: dict[str, Any], *, at_least: int = 1
) -> list[Answer]:
    """The request on fresh connections until each worker has answered ``at_least`` times."""
    answers: list[Answer] = []
    for _ in range(ATTEMPTS):
        answers.append(call(proxy, operation, payload))
        served = [a.worker for a in answers]
        if all(served.count(w) >= at_least for w in WORKERS):
            return answers
    raise AssertionError(f"{ATTEMPTS} connections did not reach both workers: {served}")


def new_table(proxy: ProxyProcess) -> str:
    name = f"workers-{uuid.uuid4().hex[:8]}"
    answer = call(
        proxy,
        "CreateTable",
        {
            "TableName": name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    assert answer.status == 200, answer.body
    return name


def scrape(proxy: ProxyProcess) -> Samples:
    status, body = get(f"{proxy.url}/metrics")
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def requests_of(samples: Samples, operation: str) -> float:
    labels = (("operation", operation), ("protocol", "http"))
    return samples.get(("daxproxy_requests_total", labels), 0.0)


def test_connections_spread_over_both_workers_which_share_one_moto(proxy: ProxyProcess) -> None:
    table = new_table(proxy)  # through one worker, to the one embedded moto
    answers = on_each_worker(proxy, "DescribeTable", {"TableName": table})
    assert all(a.status == 200 for a in answers)  # both workers reach the same backend
    log = proxy.log()
    assert log.count("embedded moto server started") == 1
    assert "worker=1" in log and "worker=2" in log  # the request log names the worker


def test_metrics_on_any_worker_sum_both(proxy: ProxyProcess) -> None:
    table = new_table(proxy)
    before = scrape(proxy)
    key = {"TableName": table, "Key": {"pk": {"S": "k"}}}
    answers = on_each_worker(proxy, "GetItem", key, at_least=2)
    assert all(a.status == 200 for a in answers)
    for _ in range(4):  # whichever worker answers the scrape, the sums are the same
        after = scrape(proxy)
        assert requests_of(after, "GetItem") - requests_of(before, "GetItem") == len(answers)
    assert after["daxproxy_workers", ()] == 2
    assert ("daxproxy_worker_restarts_total", ()) in after
    assert after["daxproxy_build_info", (("version", _version()),)] == 1


def test_the_admin_view_shows_the_totals_and_each_worker(proxy: ProxyProcess) -> None:
    table = new_table(proxy)
    on_each_worker(proxy, "GetItem", {"TableName": table, "Key": {"pk": {"S": "k"}}}, at_least=2)
    status, body = get(f"{proxy.url}/admin/caches")
    assert status == 200, body
    view = json.loads(body)
    assert view["workers"] == 2
    assert [w["worker"] for w in view["per_worker"]] == [1, 2]
    item = view["item_cache"]
    for figure in ("hits", "misses", "entries", "bytes", "max_bytes"):
        assert item[figure] == sum(w["item_cache"][figure] for w in view["per_worker"]), figure
    assert item["max_bytes"] == 2 * 256 * 1024 * 1024  # the budget is per worker


# --- coherence: no worker serves what another worker's change made stale -------------


def applied(proxy: ProxyProcess, kind: str) -> float:
    """Changes of ``kind`` the workers have applied from each other, summed."""
    return scrape(proxy).get(("daxproxy_changes_applied_total", (("kind", kind),)), 0.0)


def wait_applied(proxy: ProxyProcess, kind: str, count: float) -> None:
    """Until the other worker has applied the change: the lag, waited for, not guessed."""
    wait_for(lambda: applied(proxy, kind) >= count, f"no {kind} change applied")


def item_table(proxy: ProxyProcess) -> tuple[str, dict[str, Any]]:
    table = new_table(proxy)
    return table, {"TableName": table, "Key": {"pk": {"S": "k"}}}


def put(proxy: ProxyProcess, table: str, value: str, pk: str = "k") -> None:
    answer = call(
        proxy, "PutItem", {"TableName": table, "Item": {"pk": {"S": pk}, "v": {"S": value}}}
    )
    assert answer.status == 200, answer.body


def cached_on_each_worker(proxy: ProxyProcess, operation: str, payload: dict[str, Any]) -> Any:
    """Read until each worker has answered from its cache; what they hold (the same)."""
    for _ in range(ATTEMPTS):
        answers = on_each_worker(proxy, operation, payload)
        hits = {a.worker: a.json() for a in answers if a.headers.get("x-daxproxy-cache") == "hit"}
        if set(hits) == WORKERS:
            assert hits[1] == hits[2]
            return hits[1]
    raise AssertionError("the workers never both answered from their caches")


def moto_url(proxy: ProxyProcess) -> str:
    found = re.search(r"embedded moto server started on (\S+)", proxy.log())
    assert found, proxy.log()
    return found.group(1)


def behind_the_back(proxy: ProxyProcess, operation: str, payload: dict[str, Any]) -> None:
    """A request straight to the moto both workers use: no worker sees it."""
    status, _, body = post(
        moto_url(proxy).removeprefix("http://"),
        operation,
        payload,
        Authorization="AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
        "dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    )
    assert status == 200, body


def test_a_write_through_one_worker_is_seen_by_every_worker_after_the_lag(
    proxy: ProxyProcess,
) -> None:
    table, get_k = item_table(proxy)
    put(proxy, table, "old")
    assert cached_on_each_worker(proxy, "GetItem", get_k)["Item"]["v"] == {"S": "old"}
    before = applied(proxy, "write")
    put(proxy, table, "new")  # on one connection, so through one worker
    wait_applied(proxy, "write", before + 1)
    answers = on_each_worker(proxy, "GetItem", get_k, at_least=2)
    assert [a.json()["Item"]["v"] for a in answers] == [{"S": "new"}] * len(answers)


@pytest.mark.parametrize(
    ("request_body", "kind"),
    [({"key": {"pk": {"S": "k"}}}, "write"), ({}, "table"), (None, "all")],
    ids=["key", "table", "all"],
)
def test_an_admin_invalidation_through_one_worker_reaches_every_worker(
    proxy: ProxyProcess, request_body: dict[str, Any] | None, kind: str
) -> None:
    table, get_k = item_table(proxy)
    put(proxy, table, "old")
    assert cached_on_each_worker(proxy, "GetItem", get_k)["Item"]["v"] == {"S": "old"}
    behind_the_back(
        proxy, "PutItem", {"TableName": table, "Item": {"pk": {"S": "k"}, "v": {"S": "new"}}}
    )
    assert cached_on_each_worker(proxy, "GetItem", get_k)["Item"]["v"] == {"S": "old"}
    before = applied(proxy, kind)
    body = {"all": True} if request_body is None else {"table": table, **request_body}
    status, answer = get(f"{proxy.url}/admin/invalidate", data=json.dumps(body).encode())
    assert status == 200, answer
    wait_applied(proxy, kind, before + 1)
    answers = on_each_worker(proxy, "GetItem", get_k, at_least=2)
    assert [a.json()["Item"]["v"] for a in answers] == [{"S": "new"}] * len(answers)


def test_a_table_deleted_through_one_worker_is_forgotten_by_every_worker(
    proxy: ProxyProcess,
) -> None:
    table, get_k = item_table(proxy)
    put(proxy, table, "old")
    cached_on_each_worker(proxy, "GetItem", get_k)
    before = applied(proxy, "table")
    assert call(proxy, "DeleteTable", {"TableName": table}).status == 200
    wait_applied(proxy, "table", before + 1)
    answers = on_each_worker(proxy, "GetItem", get_k, at_least=2)
    assert {a.status for a in answers} == {400}  # the table is gone, not served from a cache
    assert all("ResourceNotFoundException" in a.json()["__type"] for a in answers)


def test_in_strict_mode_a_write_through_one_worker_drops_every_workers_pages(
    proxy: ProxyProcess,
) -> None:
    table, _ = item_table(proxy)
    put(proxy, table, "old")
    query = {
        "TableName": table,
        "KeyConditionExpression": "pk = :k",
        "ExpressionAttributeValues": {":k": {"S": "k"}},
    }
    assert cached_on_each_worker(proxy, "Query", query)["Items"][0]["v"] == {"S": "old"}
    before = applied(proxy, "write")
    put(proxy, table, "new")
    wait_applied(proxy, "write", before + 1)
    answers = on_each_worker(proxy, "Query", query, at_least=2)
    assert [a.json()["Items"][0]["v"] for a in answers] == [{"S": "new"}] * len(answers)


def test_a_killed_worker_is_replaced_and_serves_again(proxy: ProxyProcess) -> None:
    table = new_table(proxy)
    on_each_worker(proxy, "GetItem", {"TableName": table, "Key": {"pk": {"S": "k"}}})
    before = scrape(proxy)  # the supervisor now knows both workers' counts
    pid = int(re.findall(r"worker 2 \(pid (\d+)\) listening", proxy.log())[-1])
    restarts = before["daxproxy_worker_restarts_total", ()]
    os.kill(pid, signal.SIGKILL)
    found = wait_for(
        lambda: re.search(r"worker 2 \(pid (\d+)\) serving again after ([\d.]+) s", proxy.log()),
        "worker 2 was not started again",
    )
    assert int(found.group(1)) != pid
    assert float(found.group(2)) < 5.0  # at once: a process start, on a loaded machine
    assert f"worker 2 (pid {pid}) exited with signal SIGKILL; starting it again" in proxy.log()
    answers = on_each_worker(proxy, "GetItem", {"TableName": table, "Key": {"pk": {"S": "k"}}})
    assert all(a.status == 200 for a in answers)
    after = scrape(proxy)
    assert after["daxproxy_worker_restarts_total", ()] == restarts + 1
    assert after["daxproxy_workers", ()] == 2
    # The dead worker's counts are kept: the sum does not go backwards.
    assert requests_of(after, "GetItem") >= requests_of(before, "GetItem") + len(answers)


def connection_to_each_worker(proxy: ProxyProcess) -> dict[int, http.client.HTTPConnection]:
    """One open keep-alive connection to each worker (a connection stays with its worker)."""
    connections: dict[int, http.client.HTTPConnection] = {}
    for _ in range(ATTEMPTS):
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        answer.read()
        worker = int(answer.getheader("x-daxproxy-worker", "0"))
        if worker in connections:
            connection.close()
        else:
            connections[worker] = connection
        if set(connections) == WORKERS:
            return connections
    raise AssertionError(f"{ATTEMPTS} connections did not reach both workers")


def get_item_on(connection: http.client.HTTPConnection, table: str) -> tuple[int, bytes]:
    body = json.dumps({"TableName": table, "Key": {"pk": {"S": "k"}}})
    headers = {"X-Amz-Target": "DynamoDB_20120810.GetItem"}
    connection.request("POST", "/", body=body, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read()


def test_sigterm_lets_a_request_in_flight_on_each_worker_finish_and_exits_0() -> None:
    moto = MotoServer()
    moto.launch()
    relay = None
    try:
        moto.wait_ready_sync()
        relay = HoldingRelay(moto.url).start()
        caches_off = ("--item-cache-max-bytes", "0", "--query-ttl-millis", "0")
        proxy = start_workers("--upstream", relay.url, *caches_off)
        try:
            table = new_table(proxy)
            held = relay.hold("GetItem", times=2)
            answers: dict[int, tuple[int, bytes]] = {}
            requests = [
                threading.Thread(
                    target=lambda w=worker, c=connection: answers.__setitem__(
                        w, get_item_on(c, table)
                    )
                )
                for worker, connection in connection_to_each_worker(proxy).items()
            ]
            for request in requests:
                request.start()
            held.wait(2)  # moto answered both; their answers are held in the relay
            assert proxy.process is not None
            proxy.process.send_signal(signal.SIGTERM)
            wait_for(lambda: proxy.log().count("stopping on SIGTERM") == 3, "not all stopping")
            assert all(request.is_alive() for request in requests)
            relay.reset()  # the answers go back now
            for request in requests:
                request.join(10)
            assert answers == {1: (200, b"{}"), 2: (200, b"{}")}
            assert proxy.process.wait(15) == 0
            log = proxy.log()
        finally:
            proxy.stop()
            os.unlink(proxy.log_path)
    finally:
        if relay is not None:
            relay.stop()
        moto.stop()
    for worker in WORKERS:
        assert f"worker {worker} stopping on SIGTERM; requests in flight: 1" in log, log
    assert "telling 2 workers to finish their requests in flight within 10 s" in log
    assert re.search(r"daxproxy stopped in \d+\.\d\d s", log)
    assert "Traceback" not in log and "killing" not in log


def marked(mark: str) -> list[int]:
    """The live processes whose environment holds ``mark``: a supervisor, its workers and
    its moto, and nothing that another test started."""
    needle = f"WORKERS_TEST_MARK={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:  # gone, or a zombie
                continue
    return found


def marked_proxy() -> tuple[ProxyProcess, str]:
    mark = uuid.uuid4().hex
    proxy = ProxyProcess(
        "--workers", "2", env={**os.environ, **TEST_ENV, "WORKERS_TEST_MARK": mark}
    )
    return proxy, mark


def test_when_the_supervisor_is_killed_its_workers_and_its_moto_stop_too() -> None:
    proxy, mark = marked_proxy()
    try:
        proxy.start()
        wait_for(lambda: "with 2 workers" in proxy.log(), "the supervisor did not serve")
        assert len(marked(mark)) == 4  # the supervisor, two workers, moto
        assert proxy.process is not None
        proxy.process.kill()
        proxy.process.wait(10)
        wait_for(lambda: not marked(mark), "processes outlived their supervisor")
    finally:
        proxy.stop()
        os.unlink(proxy.log_path)


def test_a_signal_during_start_up_stops_what_had_started_and_exits_0() -> None:
    proxy, mark = marked_proxy()
    with open(proxy.log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daxproxy", "--port", str(proxy.port), *proxy.options],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=proxy.env,
        )
    try:
        # moto is up and worker 1 is on its way: the start-up is half done.
        wait_for(lambda: "embedded moto server started" in proxy.log(), "moto did not start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, proxy.log()
        wait_for(lambda: not marked(mark), "processes outlived the start-up")
        assert "Traceback" not in proxy.log()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.unlink(proxy.log_path)


def run_to_exit(
    *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daxproxy", "--workers", "2", *options],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or {**os.environ, **TEST_ENV},
        check=False,
    )


def test_a_worker_that_cannot_start_stops_the_start_up_with_its_message(tmp_path: Path) -> None:
    # No credentials anywhere: 'aws' cannot run, and each worker finds it as it opens.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": "us-east-1",
    }
    result = run_to_exit("--upstream", "aws", "--port", str(free_port()), env=env)
    assert result.returncode == 2, result.stderr
    assert "daxproxy cannot start: setting 'upstream': 'aws' needs AWS credentials" in (
        result.stderr
    )
    assert "worker 1 exited with code 2 before serving" in result.stderr
    assert "worker 2" not in result.stderr  # worker 2 is started once worker 1 serves
    assert "Traceback" not in result.stderr


def _version() -> str:
    from daxproxy import __version__

    return __version__
