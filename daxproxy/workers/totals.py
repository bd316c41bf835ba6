"""The workers' figures summed: one ``/metrics`` and one ``/admin/caches`` for the whole.

Pure functions over the figures of :mod:`daxproxy.workers.figures`.

:class:`MetricTotals` keeps what the supervisor knows of each worker's metrics and sums
them. Counters and histograms are summed sample by sample, gauges too (bytes, entries,
requests in flight, connections of every worker), except: ``daxproxy_build_info`` and
``daxproxy_upstream_breaker_open`` take the largest value (the breaker gauge is 1 while
any worker's breaker is open), and ``daxproxy_cache_memory_utilization_ratio`` is the
summed bytes over the summed budgets. A summed counter never goes backwards when a worker
dies and a new one takes its place from zero: the last figures known of the dead worker
(from the last scrape or the supervisor's periodic read) are kept and added from then on
(its gauges are dropped: its caches died with it). What a killed worker counted after
that last read is lost.

:func:`cache_totals` is ``/admin/caches`` across workers: the totals of each cache and each
worker's own figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric

from daxproxy.workers.figures import Family

_LARGEST = frozenset({"daxproxy_build_info", "daxproxy_upstream_breaker_open"})
_RATIO = "daxproxy_cache_memory_utilization_ratio"
_BYTES, _BUDGET = "daxproxy_cache_bytes", "daxproxy_cache_max_bytes"
_CUMULATIVE = frozenset({"counter", "histogram", "summary"})

# name -> [type, help, {(sample name, labels): value}]
_Sums = dict[str, list[Any]]
_Key = tuple[str, tuple[tuple[str, str], ...]]


def _add(sums: _Sums, families: Iterable[Family], *, cumulative_only: bool = False) -> None:
    for name, kind, documentation, samples in families:
        if cumulative_only and kind not in _CUMULATIVE:
            continue
        entry = sums.get(name)
        if entry is None:
            entry = sums[name] = [kind, documentation, {}]
        values: dict[_Key, float] = entry[2]
        largest = name in _LARGEST
        for sample, labels, value in samples:
            key = (sample, tuple(sorted(labels.items())))
            if key not in values:
                values[key] = value
            elif largest:
                values[key] = max(values[key], value)
            else:
                values[key] += value


class MetricTotals:
    """The supervisor's record of each worker's metrics, and their sum."""

    def __init__(self) -> None:
        self._last: dict[int, list[Family]] = {}  # the latest figures of each live worker
        self._retired: _Sums = {}  # the counters of the workers that died

    def update(self, worker: int, families: list[Family]) -> None:
        self._last[worker] = families

    def retire(self, worker: int) -> None:
        """``worker`` died: its last counters are kept, a new worker of its number starts
        from zero."""
        families = self._last.pop(worker, None)
        if families is not None:
            _add(self._retired, families, cumulative_only=True)

    def families(self, extra: Iterable[Metric] = ()) -> list[Metric]:
        """Every series, summed over the live workers and the retired counters, then
        ``extra`` (the supervisor's own)."""
        sums: _Sums = {}
        _add(
            sums,
            (
                [n, k, d, [[s, dict(ls), v] for (s, ls), v in values.items()]]
                for n, (k, d, values) in self._retired.items()
            ),
        )
        for worker in sorted(self._last):
            _add(sums, self._last[worker])
        _ratio(sums)
        out = []
        for name, (kind, documentation, values) in sums.items():
            metric = Metric(name, documentation, kind)
            for (sample, labels), value in values.items():
                metric.add_sample(sample, dict(labels), value)
            out.append(metric)
        out.extend(extra)
        return out

    def exposition(self, extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text of :meth:`families`."""
        return generate_latest(_Families(self.families(extra)))


class _Families:
    """What ``generate_latest`` reads of a registry."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _ratio(sums: _Sums) -> None:
    if _RATIO not in sums or _BYTES not in sums or _BUDGET not in sums:
        return
    used = {labels: value for (_, labels), value in sums[_BYTES][2].items()}
    budget = {labels: value for (_, labels), value in sums[_BUDGET][2].items()}
    ratios = sums[_RATIO][2]
    for key in ratios:
        labels = key[1]
        if budget.get(labels):
            ratios[key] = used.get(labels, 0) / budget[labels]


_SUMMED = ("entries", "bytes", "max_bytes", "hits", "misses", "evicted_bytes")


def cache_totals(workers: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """``/admin/caches`` over the workers: each worker's :meth:`CacheAdmin.stats`, by number."""
    numbers = sorted(workers)
    first = workers[numbers[0]] if numbers else {}
    tables: set[str] = set()
    for stats in workers.values():
        tables.update(stats.get("tables", ()))
    return {
        "mode": first.get("mode"),
        "workers": len(numbers),
        "item_cache": _cache_total([workers[n].get("item_cache") for n in numbers]),
        "query_cache": _cache_total([workers[n].get("query_cache") for n in numbers]),
        "tables": sorted(tables),
        "per_worker": [{"worker": n, **workers[n]} for n in numbers],
    }


def _cache_total(caches: list[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    present = [c for c in caches if c is not None]
    if not present:
        return None
    total: dict[str, Any] = {name: sum(c[name] for c in present) for name in _SUMMED}
    lookups = total["hits"] + total["misses"]
    total["hit_rate"] = total["hits"] / lookups if lookups else None
    total["ttl_millis"] = present[0]["ttl_millis"]
    evicted: dict[str, int] = {}
    for cache in present:
        for reason, count in cache["evicted"].items():
            evicted[reason] = evicted.get(reason, 0) + count
    total["evicted"] = evicted
    total["tracked_tables"] = max(c["tracked_tables"] for c in present)
    return total
