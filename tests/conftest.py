"""Fixtures shared by the whole suite: credentials that never reach for instance metadata,
leaks blamed on the test that leaks them, and the tools CI must not skip for want of."""

from __future__ import annotations

import gc
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import TEST_ENV

os.environ.update(TEST_ENV)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection imported (SDK models, moto, hypothesis: most of the heap), so
    that the collections below walk only what the tests themselves allocate."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_at_teardown() -> Iterator[None]:
    """Collect garbage as each test ends, so that an unclosed socket, transport or event
    loop the test left behind warns (and, warnings being errors, fails) in that test's own
    teardown, not in whichever test the collector happens to run under later. Autouse
    fixtures are set up first and torn down last: the test's own fixtures are gone by now.

    What survives the collection is frozen, so that the next test's collection walks only
    what that test allocated: without this each walked the whole heap, which grows with
    every test run (pytest keeps each test's reports), and the collections took a third of
    the suite's time. What outlives a test is held by a module's or the session's fixtures
    (or by the module itself); the module's collection below unfreezes and walks it all."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage_after_module() -> Iterator[None]:
    """The same for a module's fixtures: what they leak fails the module's last test. The
    whole heap, what the tests' collections froze too, is walked here once per module."""
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# The test files that skip when a tool is missing (node and npm, docker-compose). Where the
# environment variable CI is set, `make test` has installed those tools or failed, so a
# skip there means a broken set-up that would otherwise turn green: it fails instead.
NEEDS_A_TOOL = (
    "tests/integration/test_js_sdk.py",
    "tests/integration/test_document_client.py",
    "tests/integration/test_dax_js_client.py",
    "tests/integration/test_readme_snippets.py",
    "tests/integration/test_bench_smoke.py",
    "tests/unit/test_containers.py",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and os.environ.get("CI") and _needs_a_tool(item):
        reason = call.excinfo.value if call.excinfo is not None else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped where CI is set, which needs every tool: {reason}"
    return report


def _needs_a_tool(item: pytest.Item) -> bool:
    path = Path(item.path).as_posix()
    return any(path.endswith(name) for name in NEEDS_A_TOOL)
