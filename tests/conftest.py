"""Fixtures shared by the whole suite: credentials that never reach for instance metadata."""

from __future__ import annotations

import os

from tests.integration.harness import TEST_ENV

os.environ.update(TEST_ENV)
