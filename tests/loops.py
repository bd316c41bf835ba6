"""The event loops the proxy runs on, for pytest-asyncio: asyncio's, and uvloop's where it is
installed (the "fast" extra, in the dev venv). A conftest that imports
:func:`pytest_asyncio_loop_factories` runs its directory's async tests on each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from daxproxy.edge.loops import loop_factory


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    fast, name = loop_factory("auto")  # uvloop's factory where it is installed
    if fast is not None:
        factories[name] = fast
    return factories
