"""What the edge's raw-socket tests share (``test_edge_framing.py``, ``test_edge_limits.py``):
a proxy process on one of the event loops they run it on, and DynamoDB requests as bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import orjson

from tests.integration.harness import ProxyProcess, running_proxy


@contextlib.contextmanager
def proxy_on_loop(
    upstream: str, loop: str, *options: str, ca_file: str | None = None
) -> Iterator[ProxyProcess]:
    """A proxy in front of ``upstream`` on the event loop ``loop`` (one of
    :data:`~tests.integration.harness.EDGE_LOOPS`), with ``options``; when the block is done,
    its log must hold no traceback."""
    with running_proxy(
        "--upstream", upstream, "--event-loop", loop, *options, ca_file=ca_file
    ) as proxy:
        yield proxy
        assert "Traceback" not in proxy.log()


def millis(seconds: float) -> str:
    """``seconds`` as the whole milliseconds an option such as
    ``--client-read-timeout-millis`` takes."""
    return str(int(seconds * 1000))


def dynamodb_request(operation: str, payload: object | bytes, extra_headers: bytes = b"") -> bytes:
    """An HTTP/1.1 DynamoDB request for ``operation`` with ``payload`` (bytes as they are,
    else as JSON) and a Content-Length; ``extra_headers`` (each ending in CRLF) go right
    before the Content-Length."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return (
        (
            f"POST / HTTP/1.1\r\nHost: proxy\r\nX-Amz-Target: DynamoDB_20120810.{operation}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
        ).encode()
        + extra_headers
        + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
