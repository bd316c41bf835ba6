"""What ``workers = "auto"`` means: one worker per CPU this process may use.

:func:`usable_cpus` is the number of CPUs in the process's affinity mask (``taskset``,
``docker --cpuset-cpus``), capped by the CPU quota of its cgroup when one is set
(``docker --cpus 2``, a Kubernetes CPU limit): cgroup v2's ``cpu.max``, or cgroup v1's
``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``, of the process's cgroup and each cgroup
above it, the smallest winning. A fractional quota rounds up (1.5 CPUs: 2 workers, so the
quota can be used whole); the answer is at least 1. Unreadable or absent files mean no
quota. :func:`worker_count` is the ``workers`` setting as a number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from daxproxy.core.config import AUTO_WORKERS, MAX_WORKERS, Settings

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def worker_count(settings: Settings) -> int:
    """How many worker processes the settings ask for."""
    if settings.workers == AUTO_WORKERS:
        return usable_cpus()
    assert isinstance(settings.workers, int)
    return settings.workers


def usable_cpus(
    affinity: Callable[[], int] | None = None,
    proc_cgroup: Path = PROC_CGROUP,
    cgroup_root: Path = CGROUP_ROOT,
) -> int:
    """CPUs in the affinity mask, capped by the cgroup's quota (tests pass fake files)."""
    cpus = affinity() if affinity is not None else _affinity()
    quota = cgroup_quota(proc_cgroup, cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, min(cpus, MAX_WORKERS))


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_quota(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs the process's cgroup quota allows (2.5 for 250 ms per 100 ms), or None."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2
            quotas.extend(_walk(cgroup_root, path, _v2_quota))
        elif "cpu" in controllers.split(","):  # cgroup v1's cpu controller
            for mount in (cgroup_root / controllers, cgroup_root / "cpu"):
                if mount.is_dir():
                    quotas.extend(_walk(mount, path, _v1_quota))
                    break
    return min(quotas) if quotas else None


def _walk(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas of the cgroup at ``path`` under ``mount`` and of each one above it. In a
    container with its own cgroup namespace, ``path`` may not exist under the mount, whose
    root is then the container's cgroup: that root is always read."""
    found: list[float] = []
    parts = [p for p in path.strip("/").split("/") if p]
    for depth in range(len(parts), -1, -1):
        directory = mount.joinpath(*parts[:depth])
        if directory.is_dir():
            quota = read(directory)
            if quota is not None:
                found.append(quota)
    return found


def _v2_quota(directory: Path) -> float | None:
    try:
        words = (directory / "cpu.max").read_text().split()
    except OSError:
        return None
    if len(words) != 2 or words[0] == "max":
        return None
    return _ratio(words[0], words[1])


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1's -1: no quota
        return None
    return q / p
