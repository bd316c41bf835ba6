"""Graceful shutdown of the real process: what SIGTERM (and SIGINT) does to requests and to
the backend.

The proxy runs with both caches off in front of a counting forwarder that holds GetItem
back, so a GetItem is in flight upstream for as long as a test needs. On SIGTERM the proxy
must refuse new connections, close idle keep-alive connections, answer the request in
flight with the upstream's answer, and exit 0; a request stuck past
``shutdown_timeout_millis`` is cut and the process still exits 0 within the deadline; the
embedded moto server goes with the proxy, also when the signal comes during start-up.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from daxproxy.service.embedded import MotoServer
from tests.integration.counting import CountingForwarder
from tests.integration.harness import (
    EDGE_LOOPS,
    PK_SK_TABLE,
    TEST_ENV,
    ProxyProcess,
    dynamodb_client,
    running_proxy,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, sends signals")

NO_RETRIES = Config(
    retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=30, connect_timeout=5
)
PASS_THROUGH = ("--item-cache-max-bytes", "0", "--query-ttl-millis", "0")
KEY = {"pk": {"S": "k"}, "sk": {"N": "1"}}
ITEM = {**KEY, "v": {"S": "answered"}}


@pytest.fixture(params=EDGE_LOOPS)
def loop(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The proxy's --event-loop option, for each loop the edge runs on."""
    return ("--event-loop", request.param)


def client(url: str) -> Any:
    return dynamodb_client(url, NO_RETRIES)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.launch()
    server.wait_ready_sync()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def forwarder(moto: MotoServer) -> Iterator[CountingForwarder]:
    forwarder = CountingForwarder(moto.url).start()
    yield forwarder
    forwarder.stop()


@pytest.fixture
def table(moto: MotoServer, forwarder: CountingForwarder) -> str:
    name = f"shutdown-{uuid.uuid4().hex[:8]}"
    direct = client(moto.url)
    direct.create_table(TableName=name, **PK_SK_TABLE)
    direct.put_item(TableName=name, Item=ITEM)
    forwarder.reset()
    return name


class InFlight:
    """A GetItem through the proxy on a thread of its own: its answer, or its error."""

    def __init__(self, url: str, table: str) -> None:
        self.answer: dict[str, Any] | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(url, table), daemon=True)
        self._thread.start()

    def _run(self, url: str, table: str) -> None:
        dynamodb = client(url)
        try:
            self.answer = dynamodb.get_item(TableName=table, Key=KEY)
        except (BotoCoreError, ClientError) as exc:
            self.error = exc
        finally:
            dynamodb.close()

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the request did not end"


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.01)


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def idle_keep_alive(proxy: ProxyProcess) -> http.client.HTTPConnection:
    """A connection that has had its answer and stays open, as an SDK's pool keeps them."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    connection.request("GET", "/healthz")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200 and not answer.will_close
    return connection


def closed_by_server(connection: http.client.HTTPConnection) -> bool:
    assert connection.sock is not None
    connection.sock.settimeout(0.05)
    try:
        return connection.sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def send_signal(
    proxy: ProxyProcess, signum: signal.Signals = signal.SIGTERM
) -> subprocess.Popen[bytes]:
    assert proxy.process is not None
    proxy.process.send_signal(signum)
    return proxy.process


# The README: "On SIGTERM or SIGINT the proxy stops listening, closes idle connections,
# lets requests in flight finish ..." (Ctrl-C in a terminal is SIGINT).
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_the_request_in_flight_finish_and_refuses_new_ones(
    forwarder: CountingForwarder, table: str, signum: signal.Signals, loop: tuple[str, str]
) -> None:
    # The upstream holds the GetItem until the checks below are done, however long they take.
    upstream_answers = forwarder.faults.hold["GetItem"] = threading.Event()
    with running_proxy("--upstream", forwarder.url, *PASS_THROUGH, *loop) as proxy:
        idle = idle_keep_alive(proxy)
        request = InFlight(proxy.url, table)
        wait_for(lambda: forwarder.count("GetItem") == 1, 10, "the GetItem did not go upstream")
        process = send_signal(proxy, signum)

        # While the request is still being answered: no new connection, no idle one.
        try:
            wait_for(lambda: refuses(proxy.port), 10, "new connections were still accepted")
            try:
                wait_for(lambda: closed_by_server(idle), 10, "the idle connection stayed open")
            finally:
                idle.close()
            assert request.running(), "the request ended before the upstream answered"
        finally:
            upstream_answers.set()

        request.wait(10)
        assert request.error is None, request.error
        assert request.answer is not None and request.answer["Item"] == ITEM
        assert process.wait(10) == 0
        log = proxy.log()
    assert forwarder.count("GetItem") == 1
    assert "listening on" in log
    assert f"daxproxy stopping on {signum.name}; requests in flight: 1, given up to 10 s" in log
    assert re.search(r"daxproxy stopped in \d+\.\d\d s", log), log
    assert "cutting" not in log and "Traceback" not in log


class StuckUpstream:
    """A TCP server that reads requests and never answers: stuck for good, not just slow."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.requests = 0
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            self._held.append(connection)
            connection.settimeout(5)
            with contextlib.suppress(OSError):
                if connection.recv(65536):
                    self.requests += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in self._held:
            connection.close()
        self._server.close()


@pytest.fixture
def stuck_upstream() -> Iterator[StuckUpstream]:
    upstream = StuckUpstream()
    yield upstream
    upstream.close()


@pytest.mark.parametrize("deadline_millis", [500, 0])  # 0: cut at once
def test_a_request_stuck_past_the_deadline_is_cut_and_the_process_exits_0(
    stuck_upstream: StuckUpstream, deadline_millis: int, loop: tuple[str, str]
) -> None:
    deadline = deadline_millis / 1000
    with running_proxy(
        *loop,
        "--upstream",
        stuck_upstream.url,
        *PASS_THROUGH,
        "--shutdown-timeout-millis",
        str(deadline_millis),
    ) as proxy:
        request = InFlight(proxy.url, "stuck")
        wait_for(lambda: stuck_upstream.requests == 1, 10, "the GetItem did not go upstream")
        signalled = time.monotonic()
        process = send_signal(proxy)
        assert process.wait(5) == 0
        elapsed = time.monotonic() - signalled
        request.wait(5)
        log = proxy.log()
    assert deadline <= elapsed < deadline + 2.5, elapsed
    assert request.answer is None and request.error is not None  # cut: no answer at all
    assert f"deadline of {deadline:g} s reached; requests still in flight: 1, cutting" in log
    assert "daxproxy stopped in" in log and "Traceback" not in log


def test_sigterm_stops_the_embedded_moto_server(loop: tuple[str, str]) -> None:
    with running_proxy(*loop) as proxy:
        assert proxy.process is not None
        match = re.search(r"embedded moto server started on http://127\.0\.0\.1:(\d+)", proxy.log())
        assert match, proxy.log()
        moto_port = int(match.group(1))
        (moto_pid,) = children(proxy.process.pid)
        assert client(proxy.url).list_tables()["TableNames"] is not None
        assert send_signal(proxy).wait(15) == 0
        log = proxy.log()
    assert "daxproxy stopped in" in log
    wait_for(lambda: gone(moto_pid), 5, f"moto's server (pid {moto_pid}) still ran")
    assert refuses(moto_port)


def test_sigterm_while_starting_stops_the_start_up_and_exits_0(
    tmp_path: Path, loop: tuple[str, str]
) -> None:
    log_path = tmp_path / "daxproxy.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "daxproxy", "--port", "0", "--log-level", "debug", *loop],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_ENV},
        )
    try:
        # The signal handlers are in place before this line; moto takes longer to start.
        wait_for(lambda: b"starting" in log_path.read_bytes(), 30, "no start-up line")
        started: set[int] = set()
        process.send_signal(signal.SIGTERM)
        while process.poll() is None:
            started |= children(process.pid)
            time.sleep(0.01)
        code = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert code == 0, log
    assert "daxproxy stopping on SIGTERM while starting" in log
    assert "listening on" not in log and "Traceback" not in log
    for pid in started:  # a moto server launched before the signal went with the proxy
        wait_for(lambda pid=pid: gone(pid), 5, f"moto's server (pid {pid}) still ran")


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry))
    return found


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting to be reaped by whoever inherited it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
