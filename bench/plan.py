"""Which measurements a run makes: the quick set (``make bench``) and the full set.

Contract: :func:`build` turns the settings of a run into an ordered list of :class:`Step`,
each one server (a target for a workload) measured at one or more connection counts; the
targets of one workload run one after another, with the same generator and settings. The
sweep workload (``read-zipf``) is measured at every count of ``sweep`` (throughput against
concurrency); the pass-through workload (:data:`LONE_WORKLOAD`) at one connection too (a
forward alone: what a miss or write costs in a mostly-hit load, where nothing shares its
round trip) as well as at ``connections``; a cold-start workload only through the proxy (a
cold upstream is the same as a warm one) and for at least :data:`COLD_MIN_S`; every other
workload at ``connections``.
The quick set measures the aiohttp ceiling for the sweep workload only, the full set for
every workload that reads through the cache; the Protocol+httptools ceiling
(``constant-fast``) is measured for the sweep workload in both (the generator check), and a
pass-through workload (caches off) has no ceiling. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.targets import CONSTANT, CONSTANT_FAST, PROXY, TARGETS
from bench.workloads import CATALOGUE, DEFAULT_ITEMS, DEFAULT_SKEW, Workload

SWEEP_WORKLOAD = "read-zipf"
LONE_WORKLOAD = "passthrough"
COLD_MIN_S = 3.0
QUICK_WORKLOADS = ("read-zipf", "passthrough", "cold-start", "mix-95-5", "batch-100", "query")
FULL_WORKLOADS = tuple(CATALOGUE)


@dataclass(frozen=True, slots=True)
class Settings:
    name: str  # quick | full
    duration: float
    warmup: float
    connections: int
    sweep: tuple[int, ...]
    items: int
    skew: float
    workloads: tuple[str, ...]
    targets: tuple[str, ...] = TARGETS
    ceiling_everywhere: bool = False
    bucket_s: float = 0.1


SETS = {
    "quick": Settings(
        name="quick",
        duration=2.0,
        warmup=0.5,
        connections=32,
        sweep=(1, 8, 32),
        items=2_000,
        skew=DEFAULT_SKEW,
        workloads=QUICK_WORKLOADS,
    ),
    "full": Settings(
        name="full",
        duration=10.0,
        warmup=2.0,
        connections=32,
        sweep=(1, 2, 4, 8, 16, 32, 64, 128),
        items=DEFAULT_ITEMS,
        skew=DEFAULT_SKEW,
        workloads=FULL_WORKLOADS,
        ceiling_everywhere=True,
    ),
}


@dataclass(frozen=True, slots=True)
class Step:
    workload: Workload
    target: str
    connections: tuple[int, ...]
    duration: float
    warmup: float

    @property
    def title(self) -> str:
        return f"{self.workload.name}, {self.target}"


def workload_for(settings: Settings, name: str) -> Workload:
    return CATALOGUE[name].with_options(items=settings.items, skew=settings.skew)


def build(settings: Settings) -> list[Step]:
    steps = []
    for name in settings.workloads:
        workload = workload_for(settings, name)
        if workload.cold:
            if PROXY in settings.targets:
                duration = max(settings.duration, COLD_MIN_S)
                steps.append(Step(workload, PROXY, (settings.connections,), duration, 0.0))
            continue
        if name == SWEEP_WORKLOAD:
            counts = tuple(sorted({*settings.sweep, settings.connections}))
        elif name == LONE_WORKLOAD:
            counts = tuple(sorted({1, settings.connections}))
        else:
            counts = (settings.connections,)
        for target in TARGETS:
            if target not in settings.targets:
                continue
            if target == CONSTANT and not (
                name == SWEEP_WORKLOAD or (settings.ceiling_everywhere and workload.caches)
            ):
                continue
            if target == CONSTANT_FAST and name != SWEEP_WORKLOAD:
                continue
            steps.append(Step(workload, target, counts, settings.duration, settings.warmup))
    return steps
