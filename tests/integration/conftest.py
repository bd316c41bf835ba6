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
    proxy: str  # the proxy with its default settings, in front of its own moto server
    passthrough: str  # the proxy with every cache off, in front of the same moto server
    direct: str  # a second moto server, reached straight
    upstream: str  # the moto server behind the proxies, for looking behind their backs


def _moto() -> MotoServer:
    server = MotoServer()
    server.launch()
    server.wait_ready_sync()
    return server


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    behind, direct = _moto(), _moto()
    proxy = ProxyProcess("--upstream", behind.url)
    passthrough = ProxyProcess("--upstream", behind.url, "--item-cache-max-bytes", "0")
    try:
        proxy.start()
        passthrough.start()
        yield Endpoints(
            proxy=proxy.url, passthrough=passthrough.url, direct=direct.url, upstream=behind.url
        )
    finally:
        for process in (proxy, passthrough):
            process.stop()
            os.unlink(process.log_path)
        behind.stop()
        direct.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
