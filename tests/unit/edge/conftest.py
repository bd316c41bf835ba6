"""The edge's unit tests run on both event loops the proxy runs on (the event_loop setting):
asyncio's, and uvloop's where it is installed (the "fast" extra, in the dev venv)."""

from tests.loops import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
