"""The edge's unit tests run on both event loops the proxy runs on (the event_loop setting):
asyncio's, and uvloop's where it is installed (the "fast" extra, in the dev venv).
``frozen_date``: one Date for every answer, for tests that compare answers' bytes whole."""

import types
from collections.abc import Iterator

import pytest

from daxproxy.edge import answers
from tests.loops import pytest_asyncio_loop_factories

__all__ = ["frozen_date", "pytest_asyncio_loop_factories"]


@pytest.fixture
def frozen_date(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One Date for every answer, so that two answers' bytes can be compared whole."""
    monkeypatch.setattr(answers, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))
    answers._CLOCK.second = -1
    yield
    answers._CLOCK.second = -1
