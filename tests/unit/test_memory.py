"""The memory tuning at start-up: glibc's threshold fixed unless the environment chose, and
the objects made to start set aside from the collector."""

from __future__ import annotations

import ctypes
import gc
import sys

import pytest

from daxproxy.edge.memory import MMAP_THRESHOLD_BYTES, freeze_startup, tune_malloc


def test_the_environment_wins() -> None:
    assert "set by the environment" in tune_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc is Linux's")
def test_on_glibc_the_threshold_is_fixed() -> None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):
        pytest.skip("this Linux's C library is not glibc")
    assert tune_malloc({}) == f"malloc: glibc mmap threshold fixed at {MMAP_THRESHOLD_BYTES} bytes"


def test_the_objects_made_so_far_are_frozen_and_later_ones_collected() -> None:
    """Frozen objects are not among those the collector walks (gc.get_objects leaves the
    permanent generation out); objects made after are."""
    made_before = [[n] for n in range(10)]
    try:
        said = freeze_startup()
        frozen = gc.get_freeze_count()
        assert frozen > len(made_before) and said == f"gc: {frozen} objects made at start-up frozen"
        made_after = [[n] for n in range(10)]
        walked = {id(o) for o in gc.get_objects()}
        assert not any(id(x) in walked for x in made_before)
        assert all(id(x) in walked for x in made_after)
    finally:
        gc.unfreeze()
