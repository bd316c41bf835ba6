"""Upstream faults against real processes: moto killed and restarted, and a stalling link.

Every proxy here runs with short timeouts and a short breaker cool-down. Between the proxy
and moto sits, where a test needs one, :class:`StallingLink`: a TCP forwarder that can hold
every byte back (the upstream stalls) and deliver it all later (a write that timed out is
applied after all). The truth is always read from moto straight.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from daxproxy.service.embedded import MotoServer, free_port
from tests.integration.counting import run_to_the_end
from tests.integration.harness import ProxyProcess, dynamodb_client, get, running_proxy

COOLDOWN_MILLIS = 1000
TIMEOUT_MILLIS = 500
# A request the breaker (or the in-flight bound) refuses never goes upstream: the proxy's
# upstream counters prove that. Its time is bounded only by what it would have waited for
# had it gone (the request timeout), never by a guess at how fast a loaded machine is.
BREAKER = (
    "--breaker-failures",
    "2",
    "--breaker-cooldown-millis",
    str(COOLDOWN_MILLIS),
    "--request-timeout-millis",
    str(TIMEOUT_MILLIS),
    "--connect-timeout-millis",
    "300",
)
TABLE: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}}


def item(pk: str, value: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "v": {"S": value}}


def new_table(url: str, *pks: str, value: str = "one") -> str:
    direct = dynamodb_client(url)
    name = f"faults-{uuid.uuid4().hex[:8]}"
    direct.create_table(TableName=name, **TABLE)
    for pk in pks:
        direct.put_item(TableName=name, Item=item(pk, value))
    return name


def cache_of(answer: dict[str, Any]) -> str:
    return str(answer["ResponseMetadata"]["HTTPHeaders"].get("x-daxproxy-cache"))


def failure(call: Any) -> tuple[int, str, str, float]:
    """The status, code and message of a call that must fail, and how long it took."""
    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return (
        error["ResponseMetadata"]["HTTPStatusCode"],
        error["Error"]["Code"],
        error["Error"]["Message"],
        time.monotonic() - started,
    )


def metric(proxy: ProxyProcess, name: str) -> float | None:
    status, body = get(proxy.url + "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def upstream_attempts(proxy: ProxyProcess, operation: str) -> float:
    """How many calls of ``operation`` the proxy made upstream: answered or failed."""
    status, body = get(proxy.url + "/metrics")
    assert status == 200
    answered = f'daxproxy_upstream_request_duration_seconds_count{{operation="{operation}"}} '
    failed = f'daxproxy_upstream_failures_total{{operation="{operation}",'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith(answered) or line.startswith(failed)
    )


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def wait_until_served(call: Any, seconds: float) -> Any:
    """Retry ``call`` until it succeeds (the breaker closes by itself), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ClientError as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class StallingLink:
    """A TCP forwarder to ``port`` on its own event loop. While :attr:`stalled`, it passes
    no byte on in either direction but keeps what it read; when released, it delivers it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stalled = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StallingLink:
        self._thread.start()
        assert self._ready.wait(10), "the link did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        run_to_the_end(self._loop, self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()

        def accepted(client: asyncio.StreamReader, back: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._connection(client, back))
            connections.add(task)
            task.add_done_callback(connections.discard)

        server = await asyncio.start_server(accepted, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
            for task in list(connections):  # those still open: closed, not left pending
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    async def _connection(self, client: asyncio.StreamReader, back: asyncio.StreamWriter) -> None:
        writers = [back]
        try:
            upstream, forth = await asyncio.open_connection("127.0.0.1", self.target)
            writers.append(forth)
            await asyncio.gather(self._pipe(client, forth), self._pipe(upstream, back))
        except OSError:
            pass
        finally:
            for writer in writers:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                    await writer.wait_closed()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                while self.stalled:
                    await asyncio.sleep(0.01)
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.launch()
    try:
        server.wait_ready_sync()
        yield server
    finally:
        server.stop()


class HotLoad:
    """A thread that reads cached items through the proxy in a loop and keeps every answer
    that was not the item itself, served from the cache."""

    def __init__(self, url: str, table: str, pks: list[str]) -> None:
        self.client = dynamodb_client(url)
        self.table = table
        self.pks = pks
        self.served = 0
        self.wrong: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HotLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pk in self.pks:
                try:
                    answer = self.client.get_item(TableName=self.table, Key=key(pk))
                except ClientError as error:
                    self.wrong.append(error.response["Error"])
                    continue
                if answer.get("Item") != item(pk, "one") or cache_of(answer) != "hit":
                    self.wrong.append(answer)
                self.served += 1


def test_moto_killed_mid_load_then_restarted(moto: MotoServer) -> None:
    hot = [f"hot-{n}" for n in range(5)]
    table = new_table(moto.url, *hot, "cold-0", "cold-1")
    with running_proxy("--upstream", moto.url, *BREAKER) as proxy:
        c = dynamodb_client(proxy.url)
        for pk in hot:
            c.get_item(TableName=table, Key=key(pk))  # fills the cache
        assert metric(proxy, "daxproxy_upstream_breaker_open") == 0
        with HotLoad(proxy.url, table, hot) as load:
            wait_for(lambda: load.served > 0, 10, "the load thread was never served")
            moto.stop()
            # Misses fail with a DynamoDB-shaped 5xx; after two, the breaker is open.
            for _ in range(2):
                status, code, _, _ = failure(lambda: c.get_item(TableName=table, Key=key("cold-0")))
                assert (status, code) == (503, "ServiceUnavailable")
            tried = upstream_attempts(proxy, "GetItem"), upstream_attempts(proxy, "PutItem")
            assert tried[0] >= 7  # the five fills and the two failures are counted
            for _ in range(5):
                status, code, message, _ = failure(
                    lambda: c.get_item(TableName=table, Key=key("cold-0"))
                )
                assert (status, code) == (503, "ServiceUnavailable")
                assert "circuit breaker is open" in message
            # A write fails fast too, certainly not sent: it must leave no value behind.
            put = failure(lambda: c.put_item(TableName=table, Item=item("cold-1", "two")))
            assert put[:2] == (503, "ServiceUnavailable")
            # None of them went upstream: failed at once, not after a try. (How long they
            # took proves nothing here: a try at a dead port is refused as fast.)
            assert (
                upstream_attempts(proxy, "GetItem"),
                upstream_attempts(proxy, "PutItem"),
            ) == tried
            assert metric(proxy, "daxproxy_upstream_breaker_open") == 1
            rejected = 'daxproxy_upstream_breaker_rejected_total{operation="%s"}'
            assert metric(proxy, rejected % "GetItem") == 5
            assert metric(proxy, rejected % "PutItem") == 1
            assert metric(proxy, "daxproxy_upstream_breaker_opens_total") == 1
            served_while_down = load.served

            # moto comes back on the same port (empty: it keeps nothing across restarts).
            restarted = MotoServer(port=moto.port)
            restarted.launch()
            try:
                restarted.wait_ready_sync()
                new_table_same_name(restarted.url, table, [*hot, "cold-0"])
                answer = wait_until_served(
                    lambda: c.get_item(TableName=table, Key=key("cold-0")),
                    COOLDOWN_MILLIS / 1000 + 5,
                )
                assert answer["Item"] == item("cold-0", "one")
                assert metric(proxy, "daxproxy_upstream_breaker_open") == 0
                assert c.get_item(TableName=table, Key=key("cold-1")).get("Item") is None
            finally:
                restarted.stop()
        assert load.wrong == []
        assert served_while_down > 0 and load.served > served_while_down
        assert "circuit breaker open" in proxy.log()
        assert "circuit breaker closed" in proxy.log()


def new_table_same_name(url: str, name: str, pks: list[str]) -> None:
    direct = dynamodb_client(url)
    direct.create_table(TableName=name, **TABLE)
    for pk in pks:
        direct.put_item(TableName=name, Item=item(pk, "one"))


def test_a_stalling_upstream_trips_the_timeout_then_the_breaker(moto: MotoServer) -> None:
    table = new_table(moto.url, "hot", "cold", "written", "refused")
    direct = dynamodb_client(moto.url)
    with (
        StallingLink(moto.port) as link,
        running_proxy("--upstream", link.url, *BREAKER) as proxy,
    ):
        c = dynamodb_client(proxy.url)
        for pk in ("hot", "written", "refused"):
            c.get_item(TableName=table, Key=key(pk))  # cached: "one"
        link.stalled = True
        # A read that stalls: the request timeout's 500.
        status, code, message, seconds = failure(
            lambda: c.get_item(TableName=table, Key=key("cold"))
        )
        assert (status, code) == (500, "InternalServerError")
        assert f"did not answer within {TIMEOUT_MILLIS / 1000:g} s" in message
        assert TIMEOUT_MILLIS / 1000 * 0.8 < seconds < TIMEOUT_MILLIS / 1000 + 1.5
        # A write that stalls: it may have happened, so the proxy must forget "written".
        put = lambda: c.put_item(TableName=table, Item=item("written", "two"))  # noqa: E731
        assert failure(put)[:2] == (500, "InternalServerError")
        # Two failures in a row: open. Misses and writes fail fast, without going upstream
        # (where they would wait out the timeout); hits are still served.
        tried = upstream_attempts(proxy, "GetItem"), upstream_attempts(proxy, "PutItem")
        assert tried == (4, 1)  # three fills and the stalled read; the stalled write
        status, code, message, seconds = failure(
            lambda: c.get_item(TableName=table, Key=key("cold"))
        )
        assert (status, code) == (503, "ServiceUnavailable")
        assert seconds < TIMEOUT_MILLIS / 1000
        assert "circuit breaker is open" in message
        refused = lambda: c.put_item(TableName=table, Item=item("refused", "two"))  # noqa: E731
        assert failure(refused)[:2] == (503, "ServiceUnavailable")
        assert (upstream_attempts(proxy, "GetItem"), upstream_attempts(proxy, "PutItem")) == tried
        hit = c.get_item(TableName=table, Key=key("hot"))
        assert hit["Item"] == item("hot", "one") and cache_of(hit) == "hit"
        assert metric(proxy, "daxproxy_upstream_breaker_open") == 1

        # The link delivers what it held: the stalled PutItem reaches moto after all.
        link.stalled = False
        deadline = time.monotonic() + 5
        while direct.get_item(TableName=table, Key=key("written"))["Item"] != item(
            "written", "two"
        ):
            assert time.monotonic() < deadline, "the held PutItem never reached moto"
            time.sleep(0.05)
        answer = wait_until_served(
            lambda: c.get_item(TableName=table, Key=key("cold")), COOLDOWN_MILLIS / 1000 + 5
        )
        assert answer["Item"] == item("cold", "one")
        # Nothing written during the fault is wrong: every key reads as moto has it.
        for pk in ("hot", "cold", "written", "refused"):
            truth = direct.get_item(TableName=table, Key=key(pk), ConsistentRead=True)
            assert c.get_item(TableName=table, Key=key(pk)).get("Item") == truth.get("Item"), pk
        assert c.get_item(TableName=table, Key=key("refused"))["Item"] == item("refused", "one")
        assert c.get_item(TableName=table, Key=key("written"))["Item"] == item("written", "two")


@pytest.mark.parametrize("grace", [60_000, 0])
def test_stale_on_error_serves_an_expired_entry_only_when_enabled(
    moto: MotoServer, grace: int
) -> None:
    table = new_table(moto.url, "a")
    direct = dynamodb_client(moto.url)
    direct.put_item(TableName=table, Item=item("b", "one"))
    options = ("--record-ttl-millis", "200", "--query-ttl-millis", "200")
    with running_proxy(
        "--upstream", moto.url, *BREAKER, *options, "--stale-grace-millis", str(grace)
    ) as proxy:
        c = dynamodb_client(proxy.url)
        query = {
            "TableName": table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}},
        }
        fresh_page = c.query(**query)
        assert c.get_item(TableName=table, Key=key("a"))["Item"] == item("a", "one")
        assert c.batch_get_item(RequestItems={table: {"Keys": [key("a"), key("b")]}})
        time.sleep(0.3)  # every entry is past its TTL
        moto.stop()
        if grace:
            answer = c.get_item(TableName=table, Key=key("a"))
            headers = answer["ResponseMetadata"]["HTTPHeaders"]
            assert answer["Item"] == item("a", "one")
            assert headers["x-daxproxy-cache"] == "stale"
            assert int(headers["x-daxproxy-stale-millis"]) >= 100
            batch = c.batch_get_item(RequestItems={table: {"Keys": [key("a"), key("b")]}})
            assert sorted(batch["Responses"][table], key=lambda i: i["pk"]["S"]) == [
                item("a", "one"),
                item("b", "one"),
            ]
            assert cache_of(batch) == "stale"
            page = c.query(**query)
            assert cache_of(page) == "stale" and page["Items"] == fresh_page["Items"]
            assert metric(proxy, 'daxproxy_stale_served_total{cache="item"}') == 3
        else:
            status, code, _, _ = failure(lambda: c.get_item(TableName=table, Key=key("a")))
            assert status >= 500 and code in ("ServiceUnavailable", "InternalServerError")
            assert failure(lambda: c.query(**query))[0] >= 500
        # A key never cached has nothing to fall back on.
        assert failure(lambda: c.get_item(TableName=table, Key=key("z")))[0] >= 500


def test_past_max_in_flight_requests_are_throttled_at_once_and_sdks_retry(
    moto: MotoServer,
) -> None:
    table = new_table(moto.url, "hot", "cold")
    with (
        StallingLink(moto.port) as link,
        running_proxy(
            "--upstream", link.url, "--max-in-flight", "2", "--request-timeout-millis", "3000"
        ) as proxy,
    ):
        c = dynamodb_client(proxy.url)
        c.get_item(TableName=table, Key=key("hot"))  # cached
        link.stalled = True
        with ThreadPoolExecutor(2) as pool:  # two misses wait on the stalled upstream
            held = [
                pool.submit(
                    lambda: dynamodb_client(proxy.url).get_item(TableName=table, Key=key("cold"))
                )
                for _ in range(2)
            ]
            deadline = time.monotonic() + 5
            while metric(proxy, "daxproxy_requests_in_flight") != 2:
                assert time.monotonic() < deadline, "the two misses never got in flight"
                time.sleep(0.02)
            # The third request, even a would-be hit, is shed at once in DynamoDB's words.
            status, code, message, seconds = failure(
                lambda: c.get_item(TableName=table, Key=key("hot"))
            )
            assert (status, code) == (400, "ThrottlingException")
            assert message == "Rate of requests exceeds the allowed throughput."
            assert seconds < 3.0  # shed, not queued behind the stalled two (3 s timeout)
            # An SDK with retries backs off and tries again: it is a throttle to botocore.
            retrying = dynamodb_client(
                proxy.url, Config(retries={"total_max_attempts": 3, "mode": "standard"})
            )
            with pytest.raises(ClientError) as raised:
                retrying.get_item(TableName=table, Key=key("hot"))
            assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 2
            link.stalled = False
            assert [f.result()["Item"] for f in held] == [item("cold", "one")] * 2
        # Room again: served, and the shed requests were counted as throttles.
        assert c.get_item(TableName=table, Key=key("hot"))["Item"] == item("hot", "one")
        assert metric(proxy, "daxproxy_throttled_requests_total") == 4
