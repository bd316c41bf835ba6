"""The DocumentClient (``@aws-sdk/lib-dynamodb``) gets the same answers through the proxy as
straight from moto, and its second reads are cache hits.

``tests/js/document_client.mjs`` drives one scenario with plain JavaScript values (sets,
lists, maps, nulls, numbers marshalled by the SDK): writes, reads made twice (get, a
projection, query, a count, batch get), scan, update, a failed condition, transactions. It
runs once through the proxy and once against an identical moto server, with the same table
name; each step's output or error must be equal, and through the proxy every second read
must say ``x-daxproxy-cache: hit``. Where moto is wrong, the step is checked against
DynamoDB's documented answer instead (and pinned in ``tests/unit/test_where_moto_differs.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Endpoints
from tests.integration.harness import TEST_ENV, without_unasked_capacity

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCENARIO = JS_DIR / "document_client.mjs"
PACKAGES = ("@aws-sdk/client-dynamodb", "@aws-sdk/lib-dynamodb")
TIMEOUT = 60.0

READS = ("Get", "Get (projection #n[1])", "Query", "Query (count)", "BatchGet")
READS_AFTER_WRITES = ("Get (after update)", "Get (after the transaction)")
# moto's wrong answers, each kept so that a moto that gets it right is noticed.
PROJECTION_REFUSED = {
    "name": "ValidationException",
    "message": "Value provided in ExpressionAttributeNames unused in expressions: keys: {#n}",
    "status": 400,
}
MAP_KEY = "Get (key holding a map)"

pytestmark = pytest.mark.slow


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the DocumentClient test needs Node.js 20+")
    missing = [name for name in PACKAGES if not (JS_DIR / "node_modules" / name).is_dir()]
    if missing:
        pytest.fail(
            f"node is installed but tests/js/node_modules lacks {', '.join(missing)}: "
            "run `make test`, which installs it with `npm ci` in tests/js"
        )
    return node


def _run(node: str, endpoint: str, table: str) -> list[dict[str, Any]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    argv = [node, str(SCENARIO), endpoint, table]
    try:
        done = subprocess.run(
            argv,
            cwd=JS_DIR,
            env={**environment, **TEST_ENV},
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
            f"{' '.join(argv)} exited {done.returncode}\n{done.stderr}\n{done.stdout[-4000:]}"
        )
    steps: list[dict[str, Any]] = json.loads(done.stdout)
    return steps


def _by_op(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for step in steps:
        assert step["op"] not in out, f"{step['op']} twice"
        outcome = {k: v for k, v in step.items() if k not in ("op", "cache")}
        if step["op"].startswith("BatchGet") and "result" in outcome:  # it asks for none
            outcome["result"] = without_unasked_capacity(outcome["result"])
        for volatile in ("TableDescription",):
            outcome.get("result", {}).pop(volatile, None)
        out[step["op"]] = outcome
    return out


def test_the_document_client_gets_the_same_answers_through_the_proxy(
    endpoints: Endpoints,
) -> None:
    node = _node()
    table = f"docclient-{uuid.uuid4().hex[:8]}"
    proxied = _run(node, endpoints.proxy, table)
    direct = _run(node, endpoints.direct, table)
    through, straight = _by_op(proxied), _by_op(direct)
    assert list(through) == list(straight)

    # The scenario really ran.
    item = through["Get"]["result"]["Item"]
    assert item["tags"] == ["x", "y"] and item["notes"] == ["one", 2, {"three": 3}]
    assert through["Query (count)"]["result"]["Count"] == 3
    assert [i["sk"] for i in through["Query"]["result"]["Items"]] == [3, 2]
    assert through["Scan"]["result"]["Items"] == [
        {"pk": "a", "sk": 3, "title": "post 3", "views": 3}
    ]
    updated = through["Get (after update)"]["result"]["Item"]
    assert (updated["notes"][1], updated["details"]["visits"]) == (20, 5)
    assert through["Put (condition fails)"]["error"]["name"] == "ConditionalCheckFailedException"
    assert through["TransactGet"]["result"]["Responses"][2] == {}

    # Where moto is wrong: DynamoDB's answer through the proxy, moto's own straight.
    for op in ("Get (projection #n[1])", "Get (projection #n[1]) again"):
        assert straight.pop(op) == {"error": PROJECTION_REFUSED}, "moto accepts #n[1] now"
        assert through.pop(op) == {"result": {"Item": {"notes": [2], "details": {"city": "Oslo"}}}}
    # A key holding a map: moto's HTML 500, which the proxy relays as it came (DynamoDB's
    # 400 ValidationException is relayed alike: tests/unit/test_where_moto_differs.py).
    assert straight[MAP_KEY]["error"]["status"] == 500, "moto answers a map key properly now"
    assert through.pop(MAP_KEY) == straight.pop(MAP_KEY)
    assert through == straight

    caches = {step["op"]: step["cache"] for step in proxied}
    for op in READS + READS_AFTER_WRITES:
        assert caches[f"{op} again"] == "hit", (op, caches)
    assert all(step["cache"] is None for step in direct)  # moto: no such header
