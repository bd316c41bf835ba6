"""The client edge's bounds, as the protocol reads them.

:class:`Limits` holds the settings that bound a client connection
(``max_client_connections``, ``max_header_bytes``, ``max_body_bytes``,
``client_read_timeout_millis``, ``client_idle_timeout_millis``) and the errors they give;
:mod:`daxproxy.edge.protocol` documents what each bound does. ``KNOWN_FIELDS`` and
``WATCHED_FIELDS`` name the fields the protocol picks out (the request's header fields are
:class:`daxproxy.core.wire.RawHeaders`).
"""

from __future__ import annotations

from dataclasses import dataclass

from daxproxy.core.config import Settings
from daxproxy.core.errors import RequestTimeoutException, SerializationException

MAX_HEADER_FIELDS = 128

# The header fields the proxy reads (1 to 4), and those it does not (0), by their names
# as SDKs spell them: one dict look-up a field. Any other spelling is looked up lower-case.
TARGET, ENCODING, LENGTH, EXPECT = 1, 2, 3, 4
WATCHED_FIELDS = {b"x-amz-target": TARGET, b"content-encoding": ENCODING}
WATCHED_FIELDS |= {b"content-length": LENGTH, b"expect": EXPECT}
KNOWN_FIELDS = {
    **WATCHED_FIELDS,
    **{name.title(): kind for name, kind in WATCHED_FIELDS.items()},
    b"X-Amz-Target": TARGET,
    **dict.fromkeys(
        (
            b"Host",
            b"host",
            b"User-Agent",
            b"user-agent",
            b"Content-Type",
            b"content-type",
            b"X-Amz-Date",
            b"x-amz-date",
            b"Authorization",
            b"authorization",
            b"Accept-Encoding",
            b"accept-encoding",
            b"Connection",
            b"connection",
            b"amz-sdk-invocation-id",
            b"amz-sdk-request",
            b"X-Amz-Security-Token",
            b"x-amz-security-token",
            b"X-Amz-Content-SHA256",
            b"x-amz-content-sha256",
            b"x-amz-user-agent",
            b"Accept",
            b"accept",
        ),
        0,
    ),
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int  # 0: no cap
    max_header_bytes: int
    max_body_bytes: int
    read_timeout: float  # seconds
    idle_timeout: float  # seconds

    def read_timeout_error(self) -> RequestTimeoutException:
        return RequestTimeoutException(
            "The client did not send the whole request within "
            f"{self.read_timeout * 1000:g} ms (client_read_timeout_millis)"
        )

    def header_error(self) -> SerializationException:
        return SerializationException(
            "A request line or header field is longer than "
            f"{self.max_header_bytes} bytes (max_header_bytes)"
        )


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_connections=settings.max_client_connections,
        max_header_bytes=settings.max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
        read_timeout=settings.client_read_timeout_millis / 1000,
        idle_timeout=settings.client_idle_timeout_millis / 1000,
    )
