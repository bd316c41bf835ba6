"""The stream follower's Prometheus families (``coherence = "streams"``), read at scrape
time by :mod:`daxproxy.service.metrics`' collector: the lag histogram, records applied,
tables dropped, iterator errors by kind, tables followed and without a stream, and the
seconds behind of each followed table (the one label here that grows with use)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from daxproxy.core.tables import table_name
from daxproxy.service.stream_shards import ERROR_KINDS
from daxproxy.service.streams import LAG_BUCKETS, StreamFollower


def stream_families(follower: StreamFollower) -> Iterator[Metric]:
    """The stream follower's families (``coherence = "streams"``); the per-table series
    only for the tables followed."""
    stats = follower.stats
    lag = HistogramMetricFamily(
        "daxproxy_stream_lag_seconds",
        "Time from a stream record's ApproximateCreationDateTime (rounded down to the second "
        "by DynamoDB) to its change applied to the caches",
    )
    bounds = [*(repr(b) for b in LAG_BUCKETS), "+Inf"]
    total, buckets = 0, []
    for bound, count in zip(bounds, stats.lag_buckets, strict=True):
        total += count
        buckets.append((bound, total))
    lag.add_metric([], buckets, stats.lag_sum)
    yield lag
    records = CounterMetricFamily(
        "daxproxy_stream_records_applied", "Stream records applied to the caches"
    )
    records.add_metric([], stats.records)
    yield records
    drops = CounterMetricFamily(
        "daxproxy_stream_table_drops",
        "Times a table's cached items and pages were dropped because the proxy could not be "
        "sure it saw every change (it began following the stream, lost its place, or the "
        "stream went away)",
    )
    drops.add_metric([], stats.gaps)
    yield drops
    errors = CounterMetricFamily(
        "daxproxy_stream_iterator_errors",
        "Streams API failures, by kind: expired (iterator got again), trimmed (records gone), "
        "throttled (LimitExceededException: too many readers on a shard), not_found (stream "
        "or table gone), unavailable (a 5xx or no answer)",
        labels=["kind"],
    )
    for kind in ERROR_KINDS:
        errors.add_metric([kind], stats.errors[kind])
    yield errors
    followed = GaugeMetricFamily(
        "daxproxy_stream_tables_followed", "Tables whose DynamoDB Stream the proxy follows"
    )
    followed.add_metric([], len(follower.followed))
    yield followed
    unfollowed = GaugeMetricFamily(
        "daxproxy_stream_tables_without_stream",
        "Tables the proxy caches that have no DynamoDB Stream: writes that bypass the proxy "
        "are seen only when the TTL runs out",
    )
    unfollowed.add_metric([], len(follower.unfollowed))
    yield unfollowed
    behind = GaugeMetricFamily(
        "daxproxy_stream_seconds_behind",
        "Per followed table: seconds since every change made to it was known applied "
        "(absent until the follower has its place in the stream)",
        labels=["table"],
    )
    now, by_name = follower.clock(), dict[str, float]()
    for arn, stream in follower.followed.items():
        if stream.complete_at is not None:  # one series per name: the furthest behind
            seconds = now - stream.complete_at
            by_name[table_name(arn)] = max(seconds, by_name.get(table_name(arn), seconds))
    for name, seconds in sorted(by_name.items()):
        behind.add_metric([name], seconds)
    yield behind
