"""The command line: ``daxproxy [options]`` and ``python -m daxproxy``.

Parses the options into :class:`Settings` (a bad value exits 2 with a message naming the
setting), sets up logging, and serves (:mod:`daxproxy.edge.server`) until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from daxproxy import __version__
from daxproxy.core.config import LOG_FORMATS, LOG_LEVELS, SettingError, Settings
from daxproxy.edge.server import serve

log = logging.getLogger("daxproxy")

_DEFAULTS = Settings()


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    parser = argparse.ArgumentParser(
        prog="daxproxy",
        description=(
            "A DAX-style caching proxy for DynamoDB. Point any SDK's endpoint_url at it. "
            "With no --upstream it starts moto's DynamoDB server as an embedded backend."
        ),
    )
    add = parser.add_argument
    add("--version", action="version", version=f"daxproxy {__version__}")
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
        "--admin",
        action="store_true",
        default=None,
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
        action="store_true",
        default=None,
        help="log one line per client request: operation, table, cache outcome, status, "
        "time; never keys, items or credentials (default off)",
    )
    add(
        "--metrics-per-table",
        action="store_true",
        default=None,
        help="label request metrics with the table name too; each table adds series (default off)",
    )
    add(
        "--shutdown-timeout-millis",
        type=int,
        help="on SIGTERM or SIGINT, how long requests in flight may take to finish "
        f"(default {d.shutdown_timeout_millis})",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {
        name: getattr(args, name)
        for name in Settings.names()
        if getattr(args, name, None) is not None
    }
    return Settings(**given)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingError as exc:
        print(f"daxproxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(settings))
    except SettingError as exc:
        print(f"daxproxy: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, the address is not ours
        print(
            f"daxproxy: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    return 0
