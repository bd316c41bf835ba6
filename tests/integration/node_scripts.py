"""Running the JavaScript scenarios of ``tests/js`` with Node.js, for the SDK tests.

Each scenario (``scenario.mjs``, ``document_client.mjs``, ``dax_client.mjs``, sharing
``common.mjs``) takes its endpoints and a table name, prefix or steps file and prints its
steps as one JSON document; :func:`run_scenario` runs one and returns them, failing the
test when node fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import TEST_ENV

JS_DIR = Path(__file__).resolve().parents[1] / "js"
TIMEOUT = 60.0


def node_with(packages: tuple[str, ...], needed_by: str) -> str:
    """The path of ``node``, the test skipped without one; the test fails when node is
    there but ``tests/js/node_modules`` lacks one of ``packages``."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"node is not on PATH: {needed_by} needs Node.js 20+")
    missing = [name for name in packages if not (JS_DIR / "node_modules" / name).is_dir()]
    if missing:
        pytest.fail(
            f"node is installed but tests/js/node_modules lacks {', '.join(missing)}: "
            "run `make test`, which installs it with `npm ci` in tests/js"
        )
    return node


def node_env() -> dict[str, str]:
    """The suite's fixed credentials and region, and no other AWS setting of the caller's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**inherited, **TEST_ENV}


def run_scenario(
    node: str, script: str, *args: str, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The steps ``node tests/js/<script> <args>`` printed (``env``: variables added to
    :func:`node_env`'s); the test fails when it gives no answer within :data:`TIMEOUT` or
    exits other than 0."""
    argv = [node, str(JS_DIR / script), *args]
    try:
        done = subprocess.run(
            argv,
            cwd=JS_DIR,
            env={**node_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(argv)} gave no answer within {TIMEOUT:g} s: {exc.stderr!r}")
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited with {done.returncode}\n"
            f"stderr:\n{done.stderr}\nstdout (the steps so far):\n{done.stdout[-4000:]}"
        )
    steps: list[dict[str, Any]] = json.loads(done.stdout)
    return steps
