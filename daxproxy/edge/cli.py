"""The command line: ``daxproxy [options]`` and ``python -m daxproxy``.

Builds :class:`Settings` from, in rising precedence, the defaults, a TOML file (``--config``
or ``DAXPROXY_CONFIG``), ``DAXPROXY_*`` environment variables and the flags (see
:mod:`daxproxy.core.settings_sources`), loads the ``auth_file`` (:mod:`daxproxy.edge.auth`)
and opens the ``data_dir``'s store of DAX's attribute-list ids once to check it.
A bad value, an unknown key, variable or flag (flags are never abbreviated: each must be
spelled out) or an unreadable file exits 2 with one line naming the setting or the file,
and for an unknown name the closest known one, before anything starts. Then it sets
up logging (:mod:`daxproxy.edge.logs`) and serves (:mod:`daxproxy.edge.server`) until
SIGINT or SIGTERM: exit 0 after a graceful stop, 2 when it cannot listen or the settings
cannot run, 1 on a fault, logged as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from daxproxy import __version__
from daxproxy.core import settings_sources as sources
from daxproxy.core.config import EVENT_LOOPS, LOG_FORMATS, LOG_LEVELS, SettingError, Settings
from daxproxy.edge.auth import grants_of
from daxproxy.edge.logs import configure_logging
from daxproxy.edge.loops import loop_factory
from daxproxy.edge.memory import tune_malloc
from daxproxy.edge.server import serve
from daxproxy.service.attribute_store import open_store
from daxproxy.workers.cpus import worker_count
from daxproxy.workers.supervisor import supervise

log = logging.getLogger("daxproxy")

_DEFAULTS = Settings()
_SWITCH = argparse.BooleanOptionalAction


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    parser = argparse.ArgumentParser(
        prog="daxproxy",
        # A flag must be spelled out: "--record-ttl 5" must not become --record-ttl-millis.
        allow_abbrev=False,
        description=(
            "A DAX-style caching proxy for DynamoDB. Point any SDK's endpoint_url at it. "
            "With no --upstream it starts moto's DynamoDB server as an embedded backend."
        ),
    )
    add = parser.add_argument
    add("--version", action="version", version=f"daxproxy {__version__}")
    add(
        "--config",
        metavar="PATH",
        help=f"a TOML file of settings (default: ${sources.CONFIG_ENV}, else none); every "
        "option below is also a key of the file (config/daxproxy.toml documents them) and an "
        "environment variable DAXPROXY_<KEY>; flags win over variables, variables over the file",
    )
    add("--host", help=f"address to listen on (default {d.host})")
    add("--port", type=int, help=f"port to listen on (default {d.port}; 0 picks a free one)")
    add(
        "--upstream",
        metavar="URL|aws",
        help=(
            "the DynamoDB-compatible server to forward to: a URL such as http://localhost:8000 "
            "(DynamoDB Local, moto, dynalite), or 'aws' for the regional DynamoDB endpoint of "
            "--region (default: start an embedded moto server)"
        ),
    )
    add(
        "--region",
        help="region to sign upstream requests for and to pick the 'aws' endpoint "
        "(default: AWS_REGION, AWS_DEFAULT_REGION or the profile's region, else us-east-1)",
    )
    add(
        "--connect-timeout-millis",
        type=int,
        help=f"time allowed to open an upstream connection (default {d.connect_timeout_millis})",
    )
    add(
        "--request-timeout-millis",
        type=int,
        help=f"time allowed for a whole upstream request (default {d.request_timeout_millis})",
    )
    add(
        "--max-body-bytes",
        type=int,
        help=f"largest request body accepted, after decompression too (default {d.max_body_bytes})",
    )
    add(
        "--upstream-max-connections",
        type=int,
        help="size of the upstream keep-alive connection pool "
        f"(default {d.upstream_max_connections})",
    )
    add(
        "--item-cache-max-bytes",
        type=int,
        help="memory budget of the item cache (GetItem, BatchGetItem), counted with "
        f"per-entry overhead; 0 turns it off (default {d.item_cache_max_bytes})",
    )
    add(
        "--record-ttl-millis",
        type=int,
        help="how long an item-cache entry lives after it was stored, as DAX's "
        f"record-ttl-millis; 0 means no expiry (default {d.record_ttl_millis})",
    )
    add(
        "--query-ttl-millis",
        type=int,
        help="how long a cached Query or Scan page is served, as DAX's query-ttl-millis; "
        f"0 turns the query cache off (default {d.query_ttl_millis})",
    )
    add(
        "--query-cache-max-bytes",
        type=int,
        help="memory budget of the query cache; 0 turns it off "
        f"(default {d.query_cache_max_bytes})",
    )
    add(
        "--mode",
        help="'dax': DAX's semantics, its staleness included (writes do not touch cached "
        "queries); 'strict': a write seen by the proxy drops the table's cached queries "
        f"(default {d.mode})",
    )
    add(
        "--coherence",
        help="'none': a write that does not go through this proxy is seen when the TTL runs "
        "out, as with DAX; 'streams': follow each cached table's DynamoDB Stream and evict "
        f"what it changes, within the stream's lag (default {d.coherence})",
    )
    add(
        "--admin",
        action=_SWITCH,
        help="serve the admin view on the proxy's port: GET /admin/caches (entries, bytes, "
        "hit rates, TTLs) and POST /admin/invalidate ({all}, {table} or {table, key}); "
        "protect the port (default off)",
    )
    add("--log-level", choices=LOG_LEVELS, help=f"(default {d.log_level})")
    add(
        "--log-format",
        choices=LOG_FORMATS,
        help=f"'text' lines or one JSON object per line (default {d.log_format})",
    )
    add(
        "--log-requests",
        action=_SWITCH,
        help="log one line per client request: operation, table, cache outcome, status, "
        "time; never keys, items or credentials (default off)",
    )
    add(
        "--metrics-per-table",
        action=_SWITCH,
        help="label request metrics with the table name too; each table adds series (default off)",
    )
    add(
        "--shutdown-timeout-millis",
        type=int,
        help="on SIGTERM or SIGINT, how long requests in flight may take to finish "
        f"(default {d.shutdown_timeout_millis})",
    )
    add(
        "--event-loop",
        help=f"{', '.join(EVENT_LOOPS)}: 'auto' runs on uvloop where it is installed "
        f"(pip install 'daxproxy[fast]'), else on asyncio's own loop (default {d.event_loop})",
    )
    add(
        "--workers",
        metavar="N|auto",
        type=_count_or_word,
        help="serving processes on the one port, each with its own caches (budgets are per "
        "worker) kept coherent with the others; 'auto': one per CPU the process may use "
        f"(its affinity and cgroup CPU quota) (default {d.workers})",
    )
    add(
        "--auth-file",
        metavar="PATH",
        help="a TOML file of the access keys allowed in and the tables and operations each "
        "may use; every request's SigV4 signature is then checked (default: no checks)",
    )
    add(
        "--auth-clock-skew-millis",
        type=int,
        help="how far a signed request's time may be from the proxy's clock "
        f"(default {d.auth_clock_skew_millis})",
    )
    add("--tls-cert-file", metavar="PATH", help="serve HTTPS with this PEM certificate chain")
    add("--tls-key-file", metavar="PATH", help="the PEM private key of --tls-cert-file")
    add(
        "--max-in-flight",
        type=int,
        help="requests handled at once at most; past it ThrottlingException, which SDKs "
        f"retry with backoff; 0: no cap (default {d.max_in_flight})",
    )
    add(
        "--max-client-connections",
        type=int,
        help="client connections open at most; past it new ones are closed at once; "
        f"0: no cap (default {d.max_client_connections})",
    )
    add(
        "--max-header-bytes",
        type=int,
        help=f"the longest request line or header field accepted (default {d.max_header_bytes})",
    )
    add(
        "--client-read-timeout-millis",
        type=int,
        help="time a client has to send a whole request once it has begun "
        f"(default {d.client_read_timeout_millis})",
    )
    add(
        "--client-idle-timeout-millis",
        type=int,
        help="how long an idle keep-alive client connection stays open "
        f"(default {d.client_idle_timeout_millis})",
    )
    add(
        "--breaker-failures",
        type=int,
        help="consecutive upstream requests with no answer (timeout, connection) that open "
        "the circuit breaker, so that misses fail fast with a 503 while hits are served; "
        f"0: no breaker (default {d.breaker_failures})",
    )
    add(
        "--breaker-cooldown-millis",
        type=int,
        help="how long the open breaker fails requests fast before one probe tries the "
        f"upstream again (default {d.breaker_cooldown_millis})",
    )
    add(
        "--stale-grace-millis",
        type=int,
        help="when the upstream fails (no answer or a 5xx), serve a cached entry up to this "
        "long past its TTL, labelled x-daxproxy-cache: stale; 0: never "
        f"(default {d.stale_grace_millis})",
    )
    add(
        "--data-dir",
        metavar="PATH",
        help="where DAX's attribute-list ids are kept across restarts (DAX clients on this "
        "port cache them); shared by workers (default: $XDG_DATA_HOME/daxproxy, else "
        "~/.local/share/daxproxy)",
    )
    add(
        "--dax-endpoint",
        metavar="IP:PORT",
        help="the address and port DAX clients are told to connect to (DAX's endpoints "
        "call), when they reach the proxy through NAT or a port map; an IP address, "
        "[IPv6]:port for IPv6 (default: the address and port each connection reached)",
    )
    return parser


def _count_or_word(text: str) -> int | str:
    """A whole number as an int, anything else as given (:class:`Settings` checks it)."""
    return int(text) if text.strip().isdigit() else text


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed flags; a flag the parser does not know (abbreviations included) raises
    :class:`SettingError` with the closest flag, as an unknown file key or variable does."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        word = next((w for w in extras if w.startswith("-")), extras[0])
        flag = word.partition("=")[0] if word.startswith("--") else word
        raise SettingError(flag, f"is not a setting{_closest_flag(parser, flag)}")
    return args


def _closest_flag(parser: argparse.ArgumentParser, flag: str) -> str:
    known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    close = difflib.get_close_matches(flag.lower(), known, n=1) if flag.startswith("-") else []
    if not close:
        return "; daxproxy --help lists every setting"
    return f"; did you mean {close[0]!r}?"


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings of the parsed flags over ``environ``'s variables over the file."""
    return _load(args, {} if environ is None else environ)[0]


def _load(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[Settings, list[sources.Layer]]:
    layers: list[sources.Layer] = []
    path = args.config if args.config is not None else environ.get(sources.CONFIG_ENV)
    if path:
        layers.append(sources.from_toml(_read(path), path))
    layers.append(sources.from_environ(environ))
    given = {name: getattr(args, name) for name in Settings.names()}
    layers.append(sources.from_flags({k: v for k, v in given.items() if v is not None}))
    return sources.resolve(*layers), layers


def _read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise sources.ConfigFileError(path, exc.strerror or str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise sources.ConfigFileError(path, f"not UTF-8 text (byte {exc.start})") from None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the proxy; the exit code. ``environ``: the variables to read (the process's).
    With ``workers`` above 1 this process is the supervisor of that many worker processes
    (:mod:`daxproxy.workers.supervisor`); with 1, it serves, as it always has."""
    variables = os.environ if environ is None else environ
    try:
        args = parse_flags(build_parser(), argv)
        settings, layers = _load(args, variables)
        grants = grants_of(settings, variables)  # the auth_file, before anything starts
        open_store(settings).close()  # a data_dir that cannot be used stops here
    except (SettingError, sources.ConfigFileError) as exc:
        print(f"daxproxy: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, sys.stderr)
    ignored = [name for layer in layers for name in layer.ignored]
    if ignored:
        log.info("ignoring Kubernetes service variables, not settings: %s", ", ".join(ignored))
    log.debug("settings: %s", sources.describe(settings, *layers))
    workers = worker_count(settings)
    if workers > 1:
        return run(settings, lambda: supervise(settings, grants, workers))
    log.debug(tune_malloc())
    return run(settings, lambda: serve(settings, grants))


def run(settings: Settings, main: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    """Run ``main()`` on the ``event_loop`` setting's loop; the exit code: 0 (or what
    ``main`` returns), 2 when it cannot listen or the settings cannot run, 1 on a fault."""
    try:
        factory, loop_name = loop_factory(settings.event_loop)
        log.debug("event loop: %s", loop_name)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main()) or 0
    except SettingError as exc:  # found while starting: credentials, the embedded backend
        log.error("daxproxy cannot start: %s", exc)
        return 2
    except OSError as exc:  # the port is taken, the address is not ours
        log.error("daxproxy cannot listen on %s:%s: %s", settings.host, settings.port, exc.strerror)
        return 2
    except Exception:
        log.critical("daxproxy failed", exc_info=True)
        return 1
