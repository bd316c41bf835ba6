"""Keep glibc's malloc from holding on to freed memory under cache churn.

A cache that keeps storing and evicting entries of mixed sizes (100 B to 400 KB answers)
makes glibc's malloc keep freed heap space: by default, once a freed block was larger than
its mmap threshold (128 KiB at first), malloc raises the threshold (up to 32 MiB), so later
large blocks (batch answers, Query pages) land in the heap and leave holes there that are
counted in the resident set. ``make soak`` measured the proxy's RSS creeping about
0.8 MiB a minute that way while its live memory stayed flat (bench/README.md, "Soak").
Fixing the threshold keeps large blocks out of the heap: they go back to the system as soon
as they are freed, and RSS levels off.

:func:`tune_malloc` fixes it with ``mallopt`` at start-up, the same as running the process
with ``MALLOC_MMAP_THRESHOLD_=131072``: glibc's own starting value, no longer raised. A lower
one costs cache hits of large items an mmap each (measured: 32 KiB made 40 KB hits a third
slower). It does nothing where the C library is not glibc, or when the environment already
sets ``MALLOC_MMAP_THRESHOLD_`` (the operator's choice wins).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_ENVIRONMENT = "MALLOC_MMAP_THRESHOLD_"


def tune_malloc(environ: Mapping[str, str] = os.environ) -> str:
    """Fix glibc's mmap threshold; says what was done, for the start-up log."""
    if _ENVIRONMENT in environ:
        return f"malloc: {_ENVIRONMENT} set by the environment"
    if not sys.platform.startswith("linux"):
        return "malloc: not glibc, left as it is"
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library's among them
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (not musl)
    except (OSError, AttributeError):
        return "malloc: not glibc, left as it is"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return "malloc: glibc refused the mmap threshold, left as it is"
    return f"malloc: glibc mmap threshold fixed at {MMAP_THRESHOLD_BYTES} bytes"
