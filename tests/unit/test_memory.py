"""The malloc tuning at start-up: glibc's threshold fixed unless the environment chose."""

from __future__ import annotations

import ctypes
import sys

import pytest

from daxproxy.edge.memory import MMAP_THRESHOLD_BYTES, tune_malloc


def test_the_environment_wins() -> None:
    assert "set by the environment" in tune_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc is Linux's")
def test_on_glibc_the_threshold_is_fixed() -> None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):
        pytest.skip("this Linux's C library is not glibc")
    assert tune_malloc({}) == f"malloc: glibc mmap threshold fixed at {MMAP_THRESHOLD_BYTES} bytes"
