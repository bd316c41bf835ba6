"""The proxy's Prometheus metrics: the facts DAX publishes to CloudWatch, and latencies.

One :class:`Metrics` per proxy, with its own :class:`CollectorRegistry` (never the global
one, so that several proxies in one process do not clash); the edge serves it at
``GET /metrics``. :meth:`Metrics.observed` is the proxy's observer (requests, errors,
throttles, latency by protocol, operation and cache outcome, requests per table when
``metrics_per_table`` is on); :meth:`Metrics.upstream_answered` and
:meth:`Metrics.upstream_failed` are the upstream client's, :meth:`Metrics.breaker_changed`
and :meth:`Metrics.breaker_rejected` the circuit breaker's.

Everything is read at scrape time by one collector. Per-request facts are plain integers and
bucket counts, not prometheus_client's instruments: those take a lock for every increment,
and cost a cache hit three times as much (every observation happens on the event loop's
thread, and so does the scrape). Cache facts (hits, misses, bytes, entries, evictions) are
the caches' own statistics, so a hit is not counted twice.

Every label comes from a fixed set: the protocol the client spoke (``http``, ``dax``),
operation names from :mod:`daxproxy.core.operations`' table (``Unknown`` for the rest),
cache outcomes, cache names, eviction reasons, error
classes, failure reasons. Only the table label, which is off by default, grows with use.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from daxproxy import __version__
from daxproxy.core import operations
from daxproxy.core.cache import Eviction, ItemCache
from daxproxy.core.tables import table_name
from daxproxy.core.wire import Target
from daxproxy.service.calls import HIT
from daxproxy.service.observe import Outcome, operation_name
from daxproxy.service.query_cache import QueryCache
from daxproxy.service.stream_metrics import stream_families
from daxproxy.service.streams import StreamFollower

# From a cache hit served in tens of microseconds to an upstream call at the request timeout.
BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# From a change applied by the other workers within microseconds to one behind by seconds.
CHANGE_LAG_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# DynamoDB's throttling errors (DAX's ThrottledRequestCount), relayed or, later, the proxy's.
THROTTLES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}
)
CLIENT, SERVER = "client", "server"  # error classes: 4xx and 5xx
TIMEOUT, CONNECTION = "timeout", "connection"  # why the upstream gave no answer
ITEM, QUERY = "item", "query"  # cache names


class _Histogram:
    """Bucket counts (not cumulative; the last is +Inf), their total and the sum."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1  # a bucket's bound is inclusive
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        # The ``le`` labels, spelled as prometheus_client spells them (Python's repr, as Go's).
        bounds = [*(repr(b) for b in self.bounds), "+Inf"]
        for bound, count in zip(bounds, self.buckets, strict=True):
            total += count
            out.append((bound, total))
        return out


class Metrics:
    """The proxy's registry, and what it counts on the request path."""

    def __init__(self, *, per_table: bool = False) -> None:
        self.per_table = per_table
        # Per request, by label values.
        self.durations: dict[tuple[str, str, str], _Histogram] = {}  # (protocol, op., cache)
        self.errors: Counter[tuple[str, str, str]] = Counter()  # (protocol, operation, class)
        self.throttled: Counter[tuple[str, str]] = Counter()  # (protocol, operation)
        # (protocol, table, operation, cache)
        self.tables: Counter[tuple[str, str, str, str]] = Counter()
        self.upstream_durations: dict[str, _Histogram] = {}  # operation
        self.upstream_failures: Counter[tuple[str, str]] = Counter()  # (operation, reason)
        self.breaker_open: bool | None = None  # None: no breaker
        self.breaker_opens = 0
        self.breaker_rejected_requests: Counter[str] = Counter()  # operation
        # The change channel between workers (daxproxy.service.coherence), when there is one.
        self.channel = False
        self.changes_published: Counter[str] = Counter()  # kind
        self.changes_applied: Counter[str] = Counter()  # kind
        self.change_lag = _Histogram(CHANGE_LAG_BUCKETS)
        self.change_channel_lost = 0
        self.change_channel_resets = 0
        # Read at scrape time.
        self.item_cache: ItemCache | None = None
        self.query_cache: QueryCache | None = None
        self.in_flight: Callable[[], int] | None = None
        self.streams: StreamFollower | None = None
        self.client_connections: int | None = None
        self.client_connections_refused = 0  # past max_client_connections
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def watch(
        self,
        *,
        item_cache: ItemCache | None = None,
        query_cache: QueryCache | None = None,
        in_flight: Callable[[], int] | None = None,
        streams: StreamFollower | None = None,
    ) -> None:
        """The caches that are on, the proxy's count of requests in flight, and the stream
        follower (``coherence = "streams"``)."""
        self.item_cache = item_cache
        self.query_cache = query_cache
        self.in_flight = in_flight
        self.streams = streams

    def set_client_connections(self, count: int | None) -> None:
        """Open client connections, as the edge's server knows them (None: unknown)."""
        self.client_connections = count

    def client_connection_refused(self) -> None:
        """A client connection closed on accept: ``max_client_connections`` were open."""
        self.client_connections_refused += 1

    # Per request ------------------------------------------------------------------------

    def observed(self, outcome: Outcome) -> None:
        self.record(
            outcome.protocol,
            outcome.operation,
            outcome.cache,
            outcome.status,
            outcome.error_type,
            table=outcome.table,
            seconds=outcome.seconds,
        )

    def record(
        self,
        protocol: str,
        operation: str,
        cache: str,
        status: int,
        error_type: str | None,
        *,
        table: str | None,
        seconds: float,
    ) -> None:
        """What :meth:`observed` counts, told directly by the proxy (no Outcome built);
        ``table`` is only read with ``per_table``."""
        self._durations_of(protocol, operation, cache).observe(seconds)
        if status >= 400:
            self.errors[protocol, operation, CLIENT if status < 500 else SERVER] += 1
            if error_type in THROTTLES:
                self.throttled[protocol, operation] += 1
        if self.per_table:
            name = "" if table is None else table_name(table)
            self.tables[protocol, name, operation, cache] += 1

    def hit_recorder(self, protocol: str, operation: str) -> Callable[[float], None] | None:
        """What :meth:`record` counts of an answered cache hit (status 200, cache "hit"),
        bound once: its duration's histogram, whose child this makes; None with
        ``per_table``, which counts the hit's table too."""
        return None if self.per_table else self._durations_of(protocol, operation, HIT).observe

    def _durations_of(self, protocol: str, operation: str, cache: str) -> _Histogram:
        histogram = self.durations.get((protocol, operation, cache))
        if histogram is None:  # each label set's child is made once, then found
            histogram = self.durations[protocol, operation, cache] = _Histogram()
        return histogram

    def upstream_answered(self, target: Target, seconds: float) -> None:
        operation = operation_name(operations.lookup(target))
        histogram = self.upstream_durations.get(operation)
        if histogram is None:
            histogram = self.upstream_durations[operation] = _Histogram()
        histogram.observe(seconds)

    def upstream_failed(self, target: Target, reason: str) -> None:
        self.upstream_failures[operation_name(operations.lookup(target)), reason] += 1

    def breaker_changed(self, is_open: bool) -> None:
        if is_open and not self.breaker_open:
            self.breaker_opens += 1
        self.breaker_open = is_open

    def breaker_rejected(self, target: Target) -> None:
        self.breaker_rejected_requests[operation_name(operations.lookup(target))] += 1


class _Collector:
    """Every family, built from what :class:`Metrics` and the caches hold at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._upstream()
        yield from self._state()
        yield from self._lookups()
        yield from self._caches()
        if self._metrics.channel:
            yield from self._changes()
        if self._metrics.streams is not None:
            yield from stream_families(self._metrics.streams)

    def _requests(self) -> Iterator[Metric]:
        m = self._metrics
        durations = sorted(m.durations.items())
        requests = CounterMetricFamily(
            "daxproxy_requests",
            "Requests handled, by protocol (http, dax) and operation (DAX: TotalRequestCount "
            "and <Operation>RequestCount)",
            labels=["protocol", "operation"],
        )
        per_operation: Counter[tuple[str, str]] = Counter()
        for (protocol, operation, _), histogram in durations:
            per_operation[protocol, operation] += histogram.count
        for pair, count in sorted(per_operation.items()):
            requests.add_metric(list(pair), count)
        yield requests
        errors = CounterMetricFamily(
            "daxproxy_request_errors",
            "Requests answered with an error, by class: client (4xx, DAX ErrorRequestCount) "
            "or server (5xx, DAX FaultRequestCount)",
            labels=["protocol", "operation", "class"],
        )
        for labels, count in sorted(m.errors.items()):
            errors.add_metric(list(labels), count)
        yield errors
        throttled = CounterMetricFamily(
            "daxproxy_throttled_requests",
            "Requests answered with a throttling error (DAX: ThrottledRequestCount)",
            labels=["protocol", "operation"],
        )
        for pair, count in sorted(m.throttled.items()):
            throttled.add_metric(list(pair), count)
        yield throttled
        latency = HistogramMetricFamily(
            "daxproxy_request_duration_seconds",
            "Time to handle a request, by protocol, operation and what the cache did (hit, "
            "miss, stale, or bypass: the cache was not consulted)",
            labels=["protocol", "operation", "cache"],
        )
        for labels, histogram in durations:
            latency.add_metric(list(labels), histogram.cumulative(), histogram.sum)
        yield latency
        if m.per_table:
            tables = CounterMetricFamily(
                "daxproxy_table_requests",
                'Requests by table ("" for requests naming several tables or none), '
                "protocol, operation and what the cache did",
                labels=["protocol", "table", "operation", "cache"],
            )
            for table_labels, count in sorted(m.tables.items()):
                tables.add_metric(list(table_labels), count)
            yield tables

    def _upstream(self) -> Iterator[Metric]:
        m = self._metrics
        latency = HistogramMetricFamily(
            "daxproxy_upstream_request_duration_seconds",
            "Time for the upstream to answer a request the proxy sent, by operation",
            labels=["operation"],
        )
        for operation, histogram in sorted(m.upstream_durations.items()):
            latency.add_metric([operation], histogram.cumulative(), histogram.sum)
        yield latency
        failures = CounterMetricFamily(
            "daxproxy_upstream_failures",
            "Upstream requests that got no answer, by reason (timeout, connection)",
            labels=["operation", "reason"],
        )
        for labels, count in sorted(m.upstream_failures.items()):
            failures.add_metric(list(labels), count)
        yield failures
        breaker_open = GaugeMetricFamily(
            "daxproxy_upstream_breaker_open",
            "1 while the circuit breaker fails upstream requests fast (open, or half-open with "
            "its one probe), else 0; absent with no breaker",
        )
        opens = CounterMetricFamily(
            "daxproxy_upstream_breaker_opens", "Times the circuit breaker opened"
        )
        rejected = CounterMetricFamily(
            "daxproxy_upstream_breaker_rejected",
            "Requests failed fast with ServiceUnavailable because the circuit breaker was open",
            labels=["operation"],
        )
        if m.breaker_open is not None:
            breaker_open.add_metric([], int(m.breaker_open))
            opens.add_metric([], m.breaker_opens)
        for operation, count in sorted(m.breaker_rejected_requests.items()):
            rejected.add_metric([operation], count)
        yield from (breaker_open, opens, rejected)

    def _state(self) -> Iterator[Metric]:
        m = self._metrics
        in_flight = GaugeMetricFamily(
            "daxproxy_requests_in_flight", "Client requests being handled right now"
        )
        if m.in_flight is not None:
            in_flight.add_metric([], m.in_flight())
        yield in_flight
        connections = GaugeMetricFamily(
            "daxproxy_client_connections",
            "Open client connections to the proxy (DAX: ClientConnections)",
        )
        if m.client_connections is not None:
            connections.add_metric([], m.client_connections)
        yield connections
        refused = CounterMetricFamily(
            "daxproxy_client_connections_refused",
            "Client connections closed as soon as accepted: max_client_connections were open",
        )
        refused.add_metric([], m.client_connections_refused)
        yield refused
        info = GaugeMetricFamily(
            "daxproxy_build_info", "The running daxproxy's version", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info

    def _lookups(self) -> Iterator[Metric]:
        m = self._metrics
        counts: dict[str, tuple[int, int]] = {}
        if m.item_cache is not None:
            counts[ITEM] = (m.item_cache.stats.hits, m.item_cache.stats.misses)
        if m.query_cache is not None:
            queries = m.query_cache
            counts["query"] = (queries.hits["Query"], queries.misses["Query"])
            counts["scan"] = (queries.hits["Scan"], queries.misses["Scan"])
        lookups = [
            (ITEM, "ItemCacheHits", "ItemCacheMisses", "GetItem and BatchGetItem keys"),
            ("query", "QueryCacheHits", "QueryCacheMisses", "Query pages"),
            ("scan", "ScanCacheHits", "ScanCacheMisses", "Scan pages"),
        ]
        for prefix, dax_hits, dax_misses, what in lookups:
            hits = CounterMetricFamily(
                f"daxproxy_{prefix}_cache_hits", f"{what} answered from the cache (DAX: {dax_hits})"
            )
            misses = CounterMetricFamily(
                f"daxproxy_{prefix}_cache_misses",
                f"{what} looked up in the cache and not found (DAX: {dax_misses})",
            )
            if prefix in counts:
                hits.add_metric([], counts[prefix][0])
                misses.add_metric([], counts[prefix][1])
            yield hits
            yield misses

    def _caches(self) -> Iterator[Metric]:
        m = self._metrics
        caches: list[tuple[str, ItemCache]] = []
        if m.item_cache is not None:
            caches.append((ITEM, m.item_cache))
        if m.query_cache is not None:
            caches.append((QUERY, m.query_cache.cache))
        labels = ["cache"]
        size = GaugeMetricFamily(
            "daxproxy_cache_bytes",
            "Bytes the cache holds, overhead included (DAX: EstimatedDbSize)",
            labels=labels,
        )
        budget = GaugeMetricFamily(
            "daxproxy_cache_max_bytes", "The cache's byte budget", labels=labels
        )
        entries = GaugeMetricFamily(
            "daxproxy_cache_entries",
            "Entries the cache holds (a dropped table's entries until they are met)",
            labels=labels,
        )
        utilization = GaugeMetricFamily(
            "daxproxy_cache_memory_utilization_ratio",
            "Bytes held over the budget (DAX: CacheMemoryUtilization, as a ratio)",
            labels=labels,
        )
        evictions = CounterMetricFamily(
            "daxproxy_cache_evictions",
            "Entries removed from the cache, by reason (size, ttl, write, table)",
            labels=["cache", "reason"],
        )
        evicted_bytes = CounterMetricFamily(
            "daxproxy_cache_evicted_bytes",
            "Bytes of the entries removed from the cache (DAX: EvictedSize)",
            labels=labels,
        )
        stale = CounterMetricFamily(
            "daxproxy_stale_served",
            "Entries served past their TTL, within stale_grace_millis, because the upstream "
            "failed (x-daxproxy-cache: stale)",
            labels=labels,
        )
        for name, cache in caches:
            stats = cache.stats
            size.add_metric([name], cache.bytes)
            budget.add_metric([name], cache.max_bytes)
            entries.add_metric([name], len(cache))
            utilization.add_metric([name], cache.bytes / cache.max_bytes)
            for reason in Eviction:
                evictions.add_metric([name, reason.value], stats.evicted[reason])
            evicted_bytes.add_metric([name], stats.evicted_bytes)
            stale.add_metric([name], stats.stale_served)
        yield from (size, budget, entries, utilization, evictions, evicted_bytes, stale)

    def _changes(self) -> Iterator[Metric]:
        m = self._metrics
        published = CounterMetricFamily(
            "daxproxy_changes_published",
            "Changes this worker made or learned and sent to the other workers, by kind "
            "(write, unsure, drop, table, all)",
            labels=["kind"],
        )
        applied = CounterMetricFamily(
            "daxproxy_changes_applied",
            "Changes other workers sent that this worker applied to its caches, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(m.changes_published.items()):
            published.add_metric([kind], count)
        for kind, count in sorted(m.changes_applied.items()):
            applied.add_metric([kind], count)
        lag = HistogramMetricFamily(
            "daxproxy_change_lag_seconds",
            "From a change's publication by one worker to its application by another",
        )
        lag.add_metric([], m.change_lag.cumulative(), m.change_lag.sum)
        lost = CounterMetricFamily(
            "daxproxy_change_channel_lost",
            "Times this worker lost its change channel (or was cut off for falling behind) "
            "and dropped its caches",
        )
        lost.add_metric([], m.change_channel_lost)
        resets = CounterMetricFamily(
            "daxproxy_change_channel_resets",
            "Times this worker dropped its caches because another worker's changes may have "
            "been lost (it was cut off, died, or published while its channel was down)",
        )
        resets.add_metric([], m.change_channel_resets)
        yield from (published, applied, lag, lost, resets)
