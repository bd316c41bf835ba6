"""Session fixtures: two identical moto servers, one behind the proxy and one reached
straight, so that every scenario can run once through the proxy and once direct and the
two answers can be compared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from daxproxy.service.embedded import MotoServer
from tests.integration.harness import ProxyProcess


@dataclass(frozen=True)
class Endpoints:
    proxy: str  # the proxy, in front of its own moto server
    direct: str  # a second moto server, reached straight
    upstream: str  # the moto server behind the proxy, for looking behind its back


def _moto() -> MotoServer:
    server = MotoServer()
    server.launch()
    server.wait_ready_sync()
    return server


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    behind, direct = _moto(), _moto()
    proxy = ProxyProcess("--upstream", behind.url)
    try:
        proxy.start()
        yield Endpoints(proxy=proxy.url, direct=direct.url, upstream=behind.url)
    finally:
        proxy.stop()
        os.unlink(proxy.log_path)
        behind.stop()
        direct.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
