"""The proxy as a process: its embedded backend, its start-up errors, and upstream faults.

An upstream that refuses connections or stalls must give the client a DynamoDB-shaped 5xx
within the configured timeout, never a hang; ``/readyz`` follows the upstream while
``/healthz`` stays up; and the embedded moto server lives and dies with the proxy.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError

from daxproxy.service.embedded import MotoServer, free_port, start_embedded_moto
from tests.integration.harness import NO_RETRIES, REGION, TEST_ENV, get, running_proxy
from tests.integration.harness import dynamodb_client as client


def test_no_upstream_starts_an_embedded_moto_and_stops_it_on_sigterm() -> None:
    with running_proxy() as proxy:
        dynamodb = boto3.client("dynamodb", endpoint_url=proxy.url, region_name=REGION)
        table = f"embedded-{uuid.uuid4().hex[:8]}"
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "1"}, "v": {"S": "hello"}})
        item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "1"}})["Item"]
        assert item == {"pk": {"S": "1"}, "v": {"S": "hello"}}
        assert get(proxy.url + "/readyz")[0] == 200
        match = re.search(r"embedded moto server started on http://127\.0\.0\.1:(\d+)", proxy.log())
        assert match, proxy.log()
        moto_port = int(match.group(1))
        assert proxy.stop() == 0
        assert "daxproxy stopped" in proxy.log()
    with socket.socket() as sock:  # the embedded server went with the proxy
        assert sock.connect_ex(("127.0.0.1", moto_port)) != 0


def test_the_console_script_documents_every_option() -> None:
    script = Path(sys.executable).parent / "daxproxy"
    result = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    for option in (
        "--upstream",
        "--region",
        "--port",
        "--host",
        "--connect-timeout-millis",
        "--request-timeout-millis",
        "--max-body-bytes",
        "--upstream-max-connections",
    ):
        assert option in result.stdout


def test_a_bad_setting_stops_start_up_with_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daxproxy", "--upstream", "localhost:8000"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**TEST_ENV, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "'upstream'" in result.stderr and "Traceback" not in result.stderr


def test_a_refusing_upstream_is_a_fast_503_and_not_ready() -> None:
    port = free_port()
    with running_proxy("--upstream", f"http://127.0.0.1:{port}") as proxy:
        started = time.monotonic()
        with pytest.raises(ClientError) as caught:
            client(proxy.url).list_tables()  # type: ignore[attr-defined]
        assert time.monotonic() - started < 5
        assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert get(proxy.url + "/healthz")[0] == 200
        status, body = get(proxy.url + "/readyz")
        assert status == 503 and orjson.loads(body)["status"] == "upstream unavailable"

        # The upstream comes up: the same proxy serves, no restart needed.
        moto = MotoServer(port=port)
        moto.launch()
        try:
            moto.wait_ready_sync()
            assert get(proxy.url + "/readyz")[0] == 200
            assert "TableNames" in client(proxy.url).list_tables()  # type: ignore[attr-defined]
        finally:
            moto.stop()


@pytest.fixture
def stalling_upstream() -> Iterator[int]:
    """A TCP server that accepts connections and reads, but never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        server.close()


def test_a_stalling_upstream_is_a_500_within_the_timeout(stalling_upstream: int) -> None:
    with running_proxy(
        "--upstream", f"http://127.0.0.1:{stalling_upstream}", "--request-timeout-millis", "500"
    ) as proxy:
        started = time.monotonic()
        with pytest.raises(ClientError) as caught:
            client(proxy.url).get_item(TableName="t", Key={"pk": {"S": "1"}})  # type: ignore[attr-defined]
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 3, elapsed
        assert caught.value.response["Error"]["Code"] == "InternalServerError"
        assert "did not answer within 0.5 s" in caught.value.response["Error"]["Message"]
        assert get(proxy.url + "/healthz")[0] == 200
        assert get(proxy.url + "/readyz")[0] == 503


# Distinctive credentials (the client's, and the proxy's own for signing upstream) and item
# values: none of them may reach the proxy's log, not even at debug level.
CLIENT_KEY_ID = "AKIADAXPROXYCLIENT01"
CLIENT_SECRET = "client+Secret/For/daxproxy/Log/Test/0001"
CLIENT_TOKEN = "client-session-token-for-the-daxproxy-log-test"
PROXY_KEY_ID = "AKIADAXPROXYSIGNER02"
PROXY_SECRET = "proxy+Secret/For/daxproxy/Log/Test/00002"
PROXY_TOKEN = "proxy-session-token-for-the-daxproxy-log-test"
REQUEST_FIELDS = ("operation", "table", "cache", "status", "error_type", "seconds", "protocol")
ITEM_VALUES = ("pk-value-7c1e5a0d", "ada.lovelace@example.invalid", "31415926535", "Analytical")


def test_the_log_holds_start_and_stop_but_no_secret_and_no_item(tmp_path: Path) -> None:
    moto = MotoServer()
    moto.launch()
    moto.wait_ready_sync()
    port = free_port()
    log_path = tmp_path / "stderr.log"
    environ = {
        **os.environ,
        **TEST_ENV,
        "AWS_ACCESS_KEY_ID": PROXY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": PROXY_SECRET,
        "AWS_SESSION_TOKEN": PROXY_TOKEN,
    }
    command = [sys.executable, "-m", "daxproxy", "--port", str(port), "--upstream", moto.url]
    options = ["--log-requests", "--log-format", "json", "--log-level", "debug"]
    with open(log_path, "wb") as stderr:
        process = subprocess.Popen(
            [*command, *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environ,
        )
    url = f"http://127.0.0.1:{port}"
    authorizations: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while get_or_none(url + "/healthz") != 200:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        exercise(url, authorizations)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        moto.stop()
    text = log_path.read_text()
    lines = [orjson.loads(line) for line in text.splitlines()]  # every line is JSON
    messages = [line["message"] for line in lines]
    assert {"DEBUG", "INFO"} <= {line["level"] for line in lines}
    assert any(line["logger"].startswith(("aiohttp", "botocore", "asyncio")) for line in lines)
    assert any(m.startswith("daxproxy ") and " listening on " in m for m in messages)
    assert any(
        m.startswith("gc: ") and m.endswith(" objects made at start-up frozen") for m in messages
    )
    assert any(m.startswith("daxproxy stopping on SIGTERM") for m in messages)
    assert any(m.startswith("daxproxy stopped in ") for m in messages)
    # The request log: one line per client request, its fields and nothing more.
    requests = [line for line in lines if line["logger"] == "daxproxy.requests"]
    assert len(requests) == len(authorizations) + 1  # the bad request too
    assert all(
        set(line) == {"time", "level", "logger", "message", *REQUEST_FIELDS} for line in requests
    )
    reads = [(r["operation"], r["cache"], r["status"]) for r in requests]
    assert reads.count(("GetItem", "hit", 200)) == 2  # the PutItem wrote through
    assert reads.count(("GetItem", "bypass", 400)) == 2  # the missing table, the bad body
    assert ("PutItem", "bypass", 400) in reads  # the failed condition
    assert requests[-1]["error_type"] == "SerializationException"
    assert len(authorizations) >= 10
    signatures = [a.rpartition("Signature=")[2] for a in authorizations]
    for secret in (
        CLIENT_KEY_ID,
        CLIENT_SECRET,
        CLIENT_TOKEN,
        PROXY_KEY_ID,
        PROXY_SECRET,
        PROXY_TOKEN,
        *ITEM_VALUES,
        *authorizations,
        *signatures,
    ):
        assert secret not in text, secret


def get_or_none(url: str) -> int | None:
    try:
        return get(url, timeout=1)[0]
    except OSError:
        return None


def exercise(url: str, authorizations: list[str]) -> None:
    """Reads, writes, misses, hits, errors and bad input, all carrying the item values."""
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=CLIENT_KEY_ID,
        aws_secret_access_key=CLIENT_SECRET,
        aws_session_token=CLIENT_TOKEN,
        config=NO_RETRIES,
    )

    def keep(request: Any, **_: Any) -> None:
        value = request.headers["Authorization"]
        authorizations.append(value.decode() if isinstance(value, bytes) else value)

    dynamodb.meta.events.register("before-send.dynamodb", keep)
    pk, email, number, word = ITEM_VALUES
    table = f"logs-{uuid.uuid4().hex[:8]}"
    key = {"pk": {"S": pk}}
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=table, Item={**key, "email": {"S": email}, "n": {"N": number}})
    for _ in range(2):  # hits: the PutItem wrote the item through the cache
        assert dynamodb.get_item(TableName=table, Key=key)["Item"]["email"] == {"S": email}
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET w = :w",
        ExpressionAttributeValues={":w": {"S": word}},
    )
    with pytest.raises(ClientError):  # a failed condition: an error answer with the values
        dynamodb.put_item(
            TableName=table,
            Item={**key, "email": {"S": email}},
            ConditionExpression="attribute_not_exists(pk) OR email = :e",
            ExpressionAttributeValues={":e": {"S": word}},
        )
    dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    )
    dynamodb.scan(TableName=table)
    dynamodb.batch_get_item(RequestItems={table: {"Keys": [key]}})
    with pytest.raises(ClientError):  # no such table: an error answer, from upstream
        dynamodb.get_item(TableName=f"{table}-missing", Key=key)
    dynamodb.delete_item(TableName=table, Key=key)
    dynamodb.close()
    # Bad input the proxy answers itself, holding a value and a client's signature.
    bad = urllib.request.Request(
        url,
        data=f'{{"TableName": "{table}", "Key": {{"pk": {{"S": "{pk}"'.encode(),
        headers={
            "X-Amz-Target": "DynamoDB_20120810.GetItem",
            "Authorization": authorizations[-1],
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bad, timeout=5)
    caught.value.close()
    assert get(url + "/readyz")[0] == 200


def moto_children() -> list[int]:
    """The pids of this process's live children running moto's server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"moto.server" in command and " Z " not in stat:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_a_start_cancelled_while_moto_starts_leaves_no_moto_behind() -> None:
    before = set(moto_children())  # the suite's own moto servers
    starting = asyncio.create_task(start_embedded_moto())
    deadline = time.monotonic() + 10
    while not (launched := set(moto_children()) - before):  # listening takes about a second
        assert time.monotonic() < deadline and not starting.done()
        await asyncio.sleep(0.01)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not launched & set(moto_children())
