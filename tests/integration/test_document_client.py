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

import uuid
from typing import Any

import pytest

from tests.integration.conftest import Endpoints
from tests.integration.harness import without_unasked_capacity
from tests.integration.node_scripts import node_with, run_scenario

SCENARIO = "document_client.mjs"
PACKAGES = ("@aws-sdk/client-dynamodb", "@aws-sdk/lib-dynamodb")

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
    node = node_with(PACKAGES, "the DocumentClient test")
    table = f"docclient-{uuid.uuid4().hex[:8]}"
    proxied = run_scenario(node, SCENARIO, endpoints.proxy, table)
    direct = run_scenario(node, SCENARIO, endpoints.direct, table)
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
