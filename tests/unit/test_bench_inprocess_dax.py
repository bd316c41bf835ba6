"""bench.inprocess_dax: both connections answer their hits inline, through the real edge."""

from __future__ import annotations

import asyncio

import pytest

from bench import inprocess_dax


def test_both_protocols_answer_hits_inline_and_are_timed() -> None:
    results = asyncio.run(inprocess_dax.measure(count=200, repeats=1))
    assert set(results) == {"HTTP", "DAX"}
    for micros, size in results.values():
        assert micros > 0
        assert size > 100


def test_a_reply_not_written_within_the_read_is_refused() -> None:
    transport = inprocess_dax.FakeTransport()
    with pytest.raises(AssertionError, match="not answered inline"):
        inprocess_dax._hits(lambda _data: None, transport, b"request", 3)
