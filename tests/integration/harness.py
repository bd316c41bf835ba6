"""Real processes for the integration suite: moto servers and the proxy itself.

The proxy runs as ``python -m daxproxy`` on a loopback port, exactly as users run it; a
test that needs other settings starts its own with :func:`running_proxy`. Results are
compared with :func:`normalize`, which blanks only what differs between two servers by
nature (request ids, clocks, generated ids), never what the proxy could get wrong.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from daxproxy.service.embedded import MotoServer, free_port
from tests.integration.counting import CountingForwarder

REGION = "us-east-1"
# One attempt per call: a test sees the proxy's own answer, never an SDK retry of it.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
# Every process the suite starts gets these: fixed test credentials, and no instance
# metadata look-up (this machine must never call out to 169.254.169.254).
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


S = TypeVar("S", bound="CountedStack")

# The event loops the edge's tests run the proxy on (its event_loop setting); the rest of
# the suite runs it on the default ("auto": uvloop, installed in the dev venv).
EDGE_LOOPS = ("asyncio", "uvloop")


class ProxyProcess:
    """``python -m daxproxy`` with the given options on a free loopback port; with
    ``ca_file`` (the options then set up TLS) it serves, and is polled, over HTTPS. Its
    environment is this process's with :data:`TEST_ENV`, or ``env`` instead when given."""

    def __init__(
        self, *options: str, ca_file: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.options = options
        self.env = {**os.environ, **TEST_ENV} if env is None else env
        self.port = free_port()
        self.tls = None if ca_file is None else ssl.create_default_context(cafile=ca_file)
        self.url = f"{'http' if ca_file is None else 'https'}://127.0.0.1:{self.port}"
        descriptor, self.log_path = tempfile.mkstemp(prefix="daxproxy-", suffix=".log")
        os.close(descriptor)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daxproxy", "--port", str(self.port), *self.options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"daxproxy exited with {self.process.returncode}:\n{self.log()}")
            health = f"{self.url}/healthz"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(health, timeout=1, context=self.tls) as answer,
            ):
                if answer.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"daxproxy did not serve within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> int:
        """SIGTERM, as a container runtime stops it; the exit code."""
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


@contextlib.contextmanager
def running_proxy(
    *options: str, ca_file: str | None = None, env: dict[str, str] | None = None
) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(*options, ca_file=ca_file, env=env)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        os.unlink(proxy.log_path)


class CountedStack:
    """moto; a counting forwarder in front of it; the proxies :meth:`setup` starts in front
    of that. Subclasses name their proxies in :meth:`setup`; a failed start-up stops what
    had started. Use one per module through :func:`serving`."""

    forwarder_class: type[CountingForwarder] = CountingForwarder

    def __init__(self) -> None:
        self.moto = MotoServer()
        self.moto.launch()
        self._proxies: list[ProxyProcess] = []
        try:
            self.moto.wait_ready_sync()
            self.forwarder = self.forwarder_class(self.moto.url).start()
            self.setup()
        except BaseException:
            self.stop()
            raise

    def setup(self) -> None:
        """Start this stack's proxies with :meth:`start_proxy`."""

    def start_proxy(self, *options: str, upstream: str | None = None) -> ProxyProcess:
        """A proxy in front of the forwarder (or ``upstream``), started, stopped with us."""
        proxy = ProxyProcess("--upstream", upstream or self.forwarder.url, *options)
        self._proxies.append(proxy)
        proxy.start()
        return proxy

    def stop(self) -> None:
        for proxy in reversed(self._proxies):
            proxy.stop()
        forwarder = getattr(self, "forwarder", None)
        if forwarder is not None:
            forwarder.stop()
        self.moto.stop()


def serving(stack_class: type[S]) -> Iterator[S]:
    """For a module-scoped fixture: ``yield from serving(Stack)``."""
    stack = stack_class()
    try:
        yield stack
    finally:
        stack.stop()


def dynamodb_client(url: str, config: Config = NO_RETRIES) -> Any:
    """A boto3 DynamoDB client for ``url`` with the test credentials and no retries."""
    return boto3.client("dynamodb", endpoint_url=url, region_name=REGION, config=config)


def get(
    url: str,
    timeout: float = 5.0,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, bytes]:
    """The status and body of a plain HTTP request (a GET unless ``data`` or ``method``
    says otherwise), error statuses included."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


# The suite's usual table: a string partition key "pk" and a number sort key "sk".
PK_SK_TABLE: dict[str, Any] = {
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


# Values two moto servers choose for themselves: clocks, random ids, and the ids derived
# from them (a stream's ARN holds its creation time).
VOLATILE_KEYS = frozenset(
    {
        "ResponseMetadata",
        "TableId",
        "LatestStreamLabel",
        "LatestStreamArn",
        "StreamArn",
        "StreamLabel",
        "ShardId",
        "ParentShardId",
        "ShardIterator",
        "NextShardIterator",
        "SequenceNumber",
        "StartingSequenceNumber",
        "EndingSequenceNumber",
        "eventID",
        "ApproximateCreationDateTime",
        "CreationDateTime",
        "CreationRequestDateTime",
        "LastIncreaseDateTime",
        "LastDecreaseDateTime",
        "LastUpdateToPayPerRequestDateTime",
        "SizeBytes",
    }
)


_SETS = ("SS", "NS", "BS")


def normalize(value: Any) -> Any:
    """A result with the volatile fields blanked, for comparing two servers' answers.

    Set members are sorted: a DynamoDB set has no order, and moto returns a set's members
    in its process's hash order, which differs between two moto servers.
    """
    if isinstance(value, dict) and len(value) == 1:
        ((kind, members),) = value.items()
        if kind in _SETS and isinstance(members, list):
            return {kind: sorted(members)}
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in VOLATILE_KEYS else normalize(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, datetime.datetime):
        return "<time>"
    return value


def without_unasked_capacity(result: Any) -> Any:
    """A BatchGetItem result without ``ConsumedCapacity``: moto reports it even when the
    request did not ask, DynamoDB only when asked (ReturnConsumedCapacity), and so does the
    proxy when it builds the answer from its cache."""
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "ConsumedCapacity"}
    return result
