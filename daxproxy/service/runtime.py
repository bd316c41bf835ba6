"""Assembles a running proxy from settings: backend, credentials, signer, upstream.

:func:`open_proxy` is an async context manager: on entry it starts the embedded moto server
when no upstream is configured, finds credentials and the region, and opens the pooled
upstream client (behind the circuit breaker unless ``breaker_failures`` is 0); on exit
it closes them in reverse order. A configuration it cannot run with raises
:class:`SettingError` naming the setting, before the proxy takes any traffic. Each proxy
has its own :class:`Metrics`, fed by the request handler, the upstream client, the breaker
and the caches.

With ``changes`` (the change hub's socket path, one worker of several), the worker
connects its :class:`~daxproxy.workers.channel.ChangeLink` before it takes traffic and its
proxy publishes and applies changes (:mod:`daxproxy.service.coherence`); without it,
nothing of that exists.

With ``coherence = "streams"`` the proxy's stream follower
(:mod:`daxproxy.service.streams`) is started once the proxy is built and stopped before
the upstream client closes. With workers, only worker 1 has one: it applies what it reads
here and publishes it to the others, and the others tell it the tables they learn.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from aiobotocore.session import AioSession

from daxproxy.core.access import Access, Grant
from daxproxy.core.access import from_settings as access_from_settings
from daxproxy.core.cache import ItemCache, WriteTracker
from daxproxy.core.config import AWS_UPSTREAM, SettingError, Settings, resolve_endpoints
from daxproxy.service.admin import CacheAdmin
from daxproxy.service.breaker import Breaker
from daxproxy.service.coherence import NO_CHANGES, Changes, Coherence
from daxproxy.service.embedded import EmbeddedBackendError, start_embedded_moto
from daxproxy.service.item_reads import ItemReads
from daxproxy.service.item_writes import ItemWrites
from daxproxy.service.metrics import Metrics
from daxproxy.service.observe import Observer
from daxproxy.service.proxy import Proxy
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.signing import (
    LOCAL_CREDENTIALS,
    CredentialSource,
    Signer,
    StaticCredentials,
    default_region,
    load_chain_credentials,
)
from daxproxy.service.stream_changes import Applier, LocalApplier, SharedApplier
from daxproxy.service.streams import StreamFollower
from daxproxy.service.tables import TableRegistry
from daxproxy.service.upstream import HttpUpstream, Upstream
from daxproxy.workers.channel import ChangeLink

log = logging.getLogger(__name__)


async def _credentials(session: AioSession, upstream: str | None) -> CredentialSource:
    if upstream is None:  # moto accepts any signature
        return StaticCredentials(LOCAL_CREDENTIALS)
    chain = await load_chain_credentials(session)
    if chain is not None:
        return chain
    if upstream == AWS_UPSTREAM:
        raise SettingError(
            "upstream",
            "'aws' needs AWS credentials, and the credential chain found none "
            "(environment, shared profile, container or instance role)",
        )
    log.info("no AWS credentials found; signing upstream requests with placeholder credentials")
    return StaticCredentials(LOCAL_CREDENTIALS)


@contextlib.asynccontextmanager
async def open_proxy(
    settings: Settings,
    grants: Mapping[str, Grant] | None = None,
    *,
    changes: str | None = None,
    worker: int = 1,
    embedded: str | None = None,
) -> AsyncIterator[Proxy]:
    """``grants``: the ``auth_file``'s, loaded at the edge (:mod:`daxproxy.edge.auth`).
    ``changes``: the change hub's socket path; ``worker``: this worker's number (1..N), as
    the hub's log names it. ``embedded``: the URL of an embedded moto already running (the
    supervisor's, which all its workers share), used as the embedded backend rather than
    starting one."""
    session = AioSession()
    region = settings.region or default_region(session)
    access = access_from_settings(settings, region, grants)  # before anything starts
    if access is not None:
        log.info("auth_file: %d access keys; every request's signature is checked", len(access))
    async with contextlib.AsyncExitStack() as stack:
        upstream_setting = settings.upstream
        if upstream_setting is None and embedded is not None:
            url = embedded
            described = f"{url} (embedded moto)"
        elif upstream_setting is None:
            url = await start_embedded(stack)
            described = f"{url} (embedded moto)"
        else:
            url = upstream_setting
            described = url if url != AWS_UPSTREAM else f"AWS DynamoDB in {region}"
        signer = Signer(await _credentials(session, upstream_setting), region)
        metrics = Metrics(per_table=settings.metrics_per_table)
        upstream = HttpUpstream(
            resolve_endpoints(url, region),
            signer,
            connect_timeout=settings.connect_timeout_millis / 1000,
            request_timeout=settings.request_timeout_millis / 1000,
            max_connections=settings.upstream_max_connections,
            observer=metrics,
        )
        stack.push_async_callback(upstream.close)
        log.info("upstream %s, region %s", described, region)
        link = None
        if changes is not None:
            link = await ChangeLink.connect(changes, worker)
            stack.push_async_callback(link.close)
        proxy = build_proxy(
            settings,
            with_breaker(settings, upstream, metrics),
            metrics,
            access=access,
            changes=link,
            streams_upstream=upstream,
            reader=worker == 1,
        )
        if proxy.coherence is not None:
            stack.push_async_callback(proxy.coherence.close)
        if proxy.streams is not None:
            await proxy.streams.start()
            stack.push_async_callback(proxy.streams.close)
            log.info("coherence streams: following the stream of each table cached")
        yield proxy


async def start_embedded(stack: contextlib.AsyncExitStack) -> str:
    """Start the embedded moto server, stopped by ``stack``; its URL. One that cannot start
    is a :class:`SettingError` naming ``upstream`` (the setting left unset)."""
    try:
        moto = await start_embedded_moto()
    except EmbeddedBackendError as exc:
        raise SettingError(
            "upstream", f"not set, so the embedded backend was to start, but {exc}"
        ) from None
    stack.callback(moto.stop)
    return moto.url


def with_breaker(settings: Settings, upstream: Upstream, metrics: Metrics) -> Upstream:
    """``upstream`` behind a circuit breaker, unless ``breaker_failures`` is 0."""
    if not settings.breaker_failures:
        return upstream
    return Breaker(
        upstream,
        failures=settings.breaker_failures,
        cooldown=settings.breaker_cooldown_millis / 1000,
        observer=metrics,
    )


def build_proxy(
    settings: Settings,
    upstream: Upstream,
    metrics: Metrics | None = None,
    observers: Sequence[Observer] = (),
    access: Access | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    changes: ChangeLink | None = None,
    streams_upstream: Upstream | None = None,
    reader: bool = True,
) -> Proxy:
    """The proxy for these settings: each cache unless its budget or TTL is 0.

    ``metrics``: the proxy's, when the upstream already reports to them; else new ones.
    ``observers``: who else hears each request's outcome (the metrics always do).
    ``access``: the check of each request's signature and grant (``auth_file``), loaded by
    :func:`open_proxy`; None: none.
    ``clock``: the caches' and the table registry's (tests tick a fake one).
    ``changes``: this worker's link to the others (:mod:`daxproxy.service.coherence`).
    ``streams_upstream``: where the stream follower (``coherence = "streams"``) reads,
    without the breaker, so that a stream's failures never fail client requests; by
    default ``upstream``. The follower is built here and started by the caller
    (:func:`open_proxy`): ``proxy.streams``. ``reader``: with ``changes``, whether this
    worker is the one that follows the streams (the others tell it their tables).
    """
    if metrics is None:
        metrics = Metrics(per_table=settings.metrics_per_table)
    items_on = settings.item_cache_max_bytes > 0
    queries_on = settings.query_cache_max_bytes > 0 and settings.query_ttl_millis > 0
    grace = settings.stale_grace_millis / 1000
    # How long a write whose outcome is unknown may still land: nothing it could outdate is
    # stored until then.
    hold = settings.request_timeout_millis / 1000
    tables = TableRegistry(upstream, clock=clock)
    queries = item_reads = item_writes = None
    cache = tracker = None
    coherent: Changes = NO_CHANGES
    coherence = None
    streams = settings.coherence == "streams" and (items_on or queries_on)
    if queries_on:
        pages = ItemCache(
            settings.query_cache_max_bytes,
            settings.query_ttl_millis / 1000,
            clock,
            stale_grace=grace,
        )
        queries = QueryCache(
            upstream, pages, tables, strict=settings.mode == "strict", hold_seconds=hold
        )
        tables.on_change(queries.dropped)
    if items_on or queries_on:
        ttl = settings.record_ttl_millis / 1000 if settings.record_ttl_millis else None
        # With the item cache off, writes still pass through it (to tell the query cache),
        # but a zero budget stores nothing.
        writes_cache = ItemCache(settings.item_cache_max_bytes, ttl, clock, stale_grace=grace)
        tables.on_change(writes_cache.drop_table)
        tracker = WriteTracker()
        if changes is not None:
            coherence = Coherence(
                changes,
                items=writes_cache,
                tracker=tracker,
                queries=queries,
                tables=tables,
                hold_seconds=hold,
                metrics=metrics,
                streams=streams,
                reader=reader,
            )
            tables.on_change(coherence.forgotten)
            changes.attach(coherence)
            coherent = coherence
        item_writes = ItemWrites(
            upstream, writes_cache, tables, tracker, queries, hold_seconds=hold, changes=coherent
        )
        if items_on:
            cache = writes_cache
            item_reads = ItemReads(upstream, cache, tables, tracker)
    follower = None
    if streams and (coherence is None or reader):
        applier: Applier = LocalApplier(cache, tracker, queries)
        if coherence is not None:  # worker 1 of several: the others hear of what it reads
            applier = SharedApplier(applier, coherence)
            coherence.announce()
        follower = StreamFollower(streams_upstream or upstream, tables, applier)
    proxy = Proxy(
        upstream,
        max_body_bytes=settings.max_body_bytes,
        item_reads=item_reads,
        item_writes=item_writes,
        queries=queries,
        admin=CacheAdmin(cache, queries, tables, settings.mode, changes=coherent, streams=follower),
        observers=observers,
        metrics=metrics,
        max_in_flight=settings.max_in_flight,
        access=access,
        tables=tables,
    )
    proxy.streams = follower
    proxy.coherence = coherence
    metrics.watch(
        item_cache=cache, query_cache=queries, in_flight=lambda: proxy.in_flight, streams=follower
    )
    return proxy
