"""The proxy's settings: one frozen, validated value.

Every setting has a default that works on a developer's machine. A bad value raises
:class:`SettingError`, which names the setting and says what it accepts; the command line
turns it into exit code 2 before anything starts. Where values come from (a TOML file,
``DAXPROXY_*`` variables, flags) is :mod:`daxproxy.core.settings_sources`' business; this
class is the one list of settings, their types, defaults and limits.
:func:`resolve_endpoints` derives the upstream URLs from ``upstream`` and ``region``;
:func:`dax_endpoint` reads the ``dax_endpoint`` setting's address and port.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

MIB = 1024 * 1024
AWS_UPSTREAM = "aws"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}\Z")
_PORT = re.compile(r"[0-9]{1,5}")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
# "dax": DAX's semantics exactly, staleness included; "strict": where DAX can serve a
# result that a write seen by the proxy made stale, drop it instead.
MODES = ("dax", "strict")
# "none": what DAX does (a write that does not go through the proxy is seen when the TTL
# runs out); "streams": follow each cached table's DynamoDB Stream and evict what it changes.
COHERENCES = ("none", "streams")
# The event loop: "auto" is uvloop where it is installed (the "fast" extra), else asyncio's.
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
# The workers setting's word: one worker per CPU the process may use (daxproxy.workers.cpus).
AUTO_WORKERS = "auto"
MAX_WORKERS = 1024
# String settings whose default is None, "not set": the AWS chain's region, the embedded
# backend, ...; and those always set. __post_init__ checks both are strings.
_OPTIONAL = (
    "upstream",
    "region",
    "auth_file",
    "tls_cert_file",
    "tls_key_file",
    "data_dir",
    "dax_endpoint",
)
_STRINGS = ("host", "mode", "coherence", "log_level", "log_format", "event_loop", *_OPTIONAL)


class SettingError(ValueError):
    """A setting has a value the proxy cannot run with."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting!r}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the proxy can be told. See ``--help`` and the README for each meaning."""

    host: str = "127.0.0.1"
    port: int = 8111
    # None: start moto's server as an embedded backend. "aws": the regional endpoint.
    # Otherwise the URL of any DynamoDB-compatible server.
    upstream: str | None = None
    # None: the AWS configuration chain's region (AWS_REGION, profile), else us-east-1.
    region: str | None = None
    connect_timeout_millis: int = 2000
    request_timeout_millis: int = 10000
    max_body_bytes: int = 16 * MIB
    upstream_max_connections: int = 128
    # The item cache (GetItem, BatchGetItem): its byte budget (0 turns it off) and DAX's
    # record TTL (0: entries never expire; LRU and writes only).
    item_cache_max_bytes: int = 256 * MIB
    record_ttl_millis: int = 300_000
    # The query cache (Query, Scan): DAX's query TTL (0 turns it off) and its byte budget.
    query_ttl_millis: int = 300_000
    query_cache_max_bytes: int = 64 * MIB
    mode: str = "dax"
    # How the caches learn of writes that do not go through this proxy (COHERENCES).
    coherence: str = "none"
    # The admin view (GET /admin/caches, POST /admin/invalidate) on the proxy's own port.
    admin: bool = False
    log_level: str = "info"
    # "text": one human-readable line per event; "json": one JSON object per line.
    log_format: str = "text"
    # One log line per client request (operation, table, cache outcome, status, time).
    log_requests: bool = False
    # Label request metrics with the table name too (cardinality grows with the tables).
    metrics_per_table: bool = False
    # On SIGTERM or SIGINT: how long requests in flight may take to finish.
    shutdown_timeout_millis: int = 10_000
    # The event loop the proxy runs on (EVENT_LOOPS).
    event_loop: str = "auto"
    # Serving processes on the one port, each with its own caches (daxproxy.workers), or
    # "auto": one per CPU the process may use. 1: one process, as without workers.
    workers: int | str = 1
    # --- Protection ---
    # A TOML file of the access keys allowed in and what each may do; None: no checks.
    auth_file: str | None = None
    # How far a signed request's X-Amz-Date may be from the proxy's clock.
    auth_clock_skew_millis: int = 300_000
    # Serve HTTPS with this certificate chain and private key (PEM files); None: HTTP.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Requests being handled at most; past it ThrottlingException at once. 0: no cap.
    max_in_flight: int = 1024
    # Client connections open at most; past it new ones are closed at once. 0: no cap.
    max_client_connections: int = 4096
    # The longest request line or header field a client may send.
    max_header_bytes: int = 16_384
    # How long a client may take to send a whole request once it has begun.
    client_read_timeout_millis: int = 30_000
    # How long an idle keep-alive client connection stays open.
    client_idle_timeout_millis: int = 60_000
    # Consecutive upstream failures that open the circuit breaker (0: no breaker), and how
    # long it stays open before one request may try the upstream again.
    breaker_failures: int = 5
    breaker_cooldown_millis: int = 5_000
    # When the upstream fails, serve a cached entry up to this long past its TTL (0: never).
    stale_grace_millis: int = 0
    # --- DAX's protocol ---
    # Where the DAX attribute-list ids are kept across restarts; None: the per-user data
    # directory (daxproxy.service.attribute_store.default_data_dir).
    data_dir: str | None = None
    # The address and port DAX's endpoints call names, "IP:port" ("[IPv6]:port"), for
    # clients that reach the proxy through NAT or a port map; None: the accepting socket's.
    dax_endpoint: str | None = None

    def __post_init__(self) -> None:
        for name in _STRINGS:
            value = getattr(self, name)
            if not isinstance(value, str) and not (value is None and name in _OPTIONAL):
                raise SettingError(name, f"must be a string, not {value!r}")
        _check_int(self, "port", 0, 65535)
        _check_int(self, "connect_timeout_millis", 1, 600_000)
        _check_int(self, "request_timeout_millis", 1, 3_600_000)
        _check_int(self, "max_body_bytes", 1024, 1024 * MIB)
        _check_int(self, "upstream_max_connections", 1, 100_000)
        _check_int(self, "item_cache_max_bytes", 0, 1024 * 1024 * MIB)
        _check_int(self, "record_ttl_millis", 0, 365 * 24 * 3600 * 1000)
        _check_int(self, "query_ttl_millis", 0, 365 * 24 * 3600 * 1000)
        _check_int(self, "query_cache_max_bytes", 0, 1024 * 1024 * MIB)
        _check_int(self, "shutdown_timeout_millis", 0, 3_600_000)
        _check_int(self, "auth_clock_skew_millis", 1000, 3_600_000)
        _check_int(self, "max_in_flight", 0, 1_000_000)
        _check_int(self, "max_client_connections", 0, 1_000_000)
        _check_int(self, "max_header_bytes", 1024, 1024 * 1024)
        _check_int(self, "client_read_timeout_millis", 100, 3_600_000)
        _check_int(self, "client_idle_timeout_millis", 100, 3_600_000)
        _check_int(self, "breaker_failures", 0, 1_000_000)
        _check_int(self, "breaker_cooldown_millis", 1, 3_600_000)
        _check_int(self, "stale_grace_millis", 0, 365 * 24 * 3600 * 1000)
        _check_workers(self.workers)
        for flag in ("admin", "log_requests", "metrics_per_table"):
            if not isinstance(getattr(self, flag), bool):
                raise SettingError(flag, f"must be true or false, not {getattr(self, flag)!r}")
        for name, choices in (
            ("mode", MODES),
            ("coherence", COHERENCES),
            ("log_level", LOG_LEVELS),
            ("log_format", LOG_FORMATS),
            ("event_loop", EVENT_LOOPS),
        ):
            if getattr(self, name) not in choices:
                raise SettingError(
                    name, f"must be one of {', '.join(choices)}, not {getattr(self, name)!r}"
                )
        if not self.host:
            raise SettingError("host", "must be an address or host name to listen on")
        if self.upstream is not None and self.upstream != AWS_UPSTREAM:
            _check_url(self.upstream)
        if self.region is not None and not _REGION.match(self.region):
            raise SettingError(
                "region", f"{self.region!r} is not an AWS region name like us-east-1"
            )
        for name in ("auth_file", "tls_cert_file", "tls_key_file"):
            if getattr(self, name) == "":
                raise SettingError(name, "must be a file's path")
        if self.data_dir == "":
            raise SettingError("data_dir", "must be a directory's path")
        _check_dax_endpoint(self.dax_endpoint)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _check_int(settings: Settings, name: str, low: int, high: int) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingError(name, f"must be a whole number from {low} to {high}, not {value!r}")


def _check_workers(value: object) -> None:
    if value == AUTO_WORKERS:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise SettingError(
            "workers",
            f"must be a whole number from 1 to {MAX_WORKERS} or {AUTO_WORKERS!r}, not {value!r}",
        )


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(
            "upstream", f"{url!r} is neither 'aws' nor an http:// or https:// URL with a host"
        )
    if "@" in parts.netloc:  # the message leaves the URL out: it would repeat the secret
        raise SettingError(
            "upstream",
            "holds a user name or password; upstream credentials come from the AWS "
            "credential chain, never from the URL",
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port lazily
    except ValueError:
        raise SettingError("upstream", f"{url!r} has an invalid port") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingError("upstream", f"{url!r}: DynamoDB endpoints take no path or query")


def _check_dax_endpoint(value: str | None) -> None:
    if value is not None:
        dax_endpoint(value)


def dax_endpoint(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """The address and port of a ``dax_endpoint`` value, ``IP:port`` or ``[IPv6]:port``.

    IP literals only, no host names: the address is the one the *clients* must reach, and a
    name resolved by the proxy gives the proxy's view of it (behind NAT or in a container,
    the wrong one), once at start, however the name changes later.
    """
    host, colon, port_text = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host) if colon else None
    except ValueError:
        address = None
    # An IPv6 address is bracketed (else its last group reads as the port), an IPv4 one not.
    if (
        address is None
        or bracketed != (address.version == 6)
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.scope_id)
    ):
        raise SettingError(
            "dax_endpoint",
            f"{value!r} is not an IP address and port, like 203.0.113.7:9000 or "
            "[2001:db8::7]:9000 (a host name is not taken: the address is the one DAX "
            "clients connect to)",
        )
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise SettingError("dax_endpoint", f"{value!r} has no port from 1 to 65535")
    return address, int(port_text)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where upstream requests go: DynamoDB's API, and the DynamoDB Streams API."""

    dynamodb: str
    streams: str


def resolve_endpoints(upstream: str, region: str) -> Endpoints:
    """The URLs for an ``upstream`` setting: ``aws`` names the regional endpoints.

    A local server (moto, dynalite, DynamoDB Local) answers both APIs on one URL; AWS serves
    Streams from its own host name.
    """
    if upstream == AWS_UPSTREAM:
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        return Endpoints(
            f"https://dynamodb.{region}.{suffix}/", f"https://streams.dynamodb.{region}.{suffix}/"
        )
    url = upstream.rstrip("/") + "/"
    return Endpoints(url, url)
