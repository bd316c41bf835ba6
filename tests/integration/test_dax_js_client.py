"""The JavaScript DAX client (``@amazon-dax-sdk/client-dax`` 3, with ``@amazon-dax-sdk/lib-dax``
on ``@aws-sdk/lib-dynamodb``) runs unchanged against the proxy and gets moto's answers.

:data:`~tests.integration.dax_js_steps.STEPS` is one scenario: every data operation
(GetItem, PutItem, UpdateItem with every ReturnValues, DeleteItem, the batches, Query and
Scan with key conditions, filters, projections, indexes, paging, Limit, COUNT, a parallel
scan, the transactions, conditions, names and values, ConsumedCapacity when asked) on
hash-only and hash+range tables with S, N and B keys (negative and fractional numeric sort
keys), every attribute type. One node process (``tests/js/dax_client.mjs``) runs it through
the DAX client, its DocumentClient and, for some steps, the SDK over HTTP on the same port;
boto3 makes the same calls straight at a second moto; each answer or error must be equal.
Repeated reads are cache hits by the proxy's ``/metrics`` counters; a write through DAX is
read over HTTP and the other way round; errors reach the client as the exceptions it
raises against DAX (TransactionCanceledException with its reasons and their old items).
``daxs://`` with a local CA (``NODE_EXTRA_CA_CERTS``) is a second, short run.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trustme
from botocore.exceptions import ClientError

from tests.integration.conftest import Endpoints
from tests.integration.dax_js_steps import INDEXES, STEPS, TABLES, step, t
from tests.integration.harness import dynamodb_client, running_proxy
from tests.integration.node_scripts import node_with, run_scenario

SCRIPT = "dax_client.mjs"
PACKAGES = ("@amazon-dax-sdk/client-dax", "@amazon-dax-sdk/lib-dax", "@aws-sdk/client-dynamodb")

pytestmark = pytest.mark.slow

# -- boto3 straight at moto ----------------------------------------------------------


def _binary_in(value: Any) -> Any:
    """DynamoDB JSON with base64 binary, as boto3 takes it (bytes)."""
    if isinstance(value, list):
        return [_binary_in(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((kind, inner),) = value.items()
        if kind == "B" and isinstance(inner, str):
            return {"B": base64.b64decode(inner)}
        if kind == "BS" and isinstance(inner, list) and all(isinstance(m, str) for m in inner):
            return {"BS": [base64.b64decode(m) for m in inner]}
    return {k: _binary_in(v) for k, v in value.items()}


def _binary_out(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_binary_out(v) for v in value]
    if isinstance(value, dict):
        return {k: _binary_out(v) for k, v in value.items()}
    return value


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _boto_call(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = getattr(client, _snake(operation))(**_binary_in(params))
    except ClientError as error:
        response = error.response
        failed: dict[str, Any] = {
            "code": response["Error"]["Code"],
            "message": response["Error"]["Message"],
            "status": response["ResponseMetadata"]["HTTPStatusCode"],
        }
        if "CancellationReasons" in response:
            failed["reasons"] = _binary_out(response["CancellationReasons"])
        return {"error": failed}
    return {"result": _binary_out(answer)}


def boto_steps(client: Any, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every step made with boto3, recorded as the node script records it."""
    records = []
    for s in steps:
        record: dict[str, Any] = {"op": s["op"]}
        if not s["pages"]:
            record.update(_boto_call(client, s["operation"], s["params"]))
        else:
            params, pages = s["params"], []
            while True:
                page = _boto_call(client, s["operation"], params)["result"]
                pages.append(page)
                if "LastEvaluatedKey" not in page:
                    break
                params = {**params, "ExclusiveStartKey": page["LastEvaluatedKey"]}
            record["result"] = pages
        records.append(record)
    return records


# -- comparing -----------------------------------------------------------------------


def _numbers_and_sets(value: Any) -> Any:
    """Numbers as Decimals (the clients spell them their own way: ``1E+20``, ``1e-12``),
    set members sorted (a set has no order)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((kind, inner),) = value.items()
            if kind == "N" and isinstance(inner, str):
                return {"N": Decimal(inner)}
            if kind == "NS" and isinstance(inner, list):
                return {"NS": sorted(Decimal(n) for n in inner)}
            if kind in ("SS", "BS") and isinstance(inner, list):
                return {kind: sorted(inner)}
        return {k: _numbers_and_sets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_and_sets(v) for v in value]
    return value


def _answer(result: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A result less what the two servers add unasked: ConsumedCapacity (moto reports it
    always, DynamoDB and DAX when asked; an empty list, moto's for transactions, the JS
    client leaves out), an empty ItemCollectionMetrics; batch responses in key order
    (DynamoDB's order is none)."""
    out = {k: v for k, v in result.items() if k != "ResponseMetadata"}
    if params.get("ReturnConsumedCapacity", "NONE") == "NONE" or not out.get("ConsumedCapacity"):
        out.pop("ConsumedCapacity", None)
    if out.get("ItemCollectionMetrics") == {}:
        del out["ItemCollectionMetrics"]
    if "Responses" in out and isinstance(out["Responses"], dict):
        out["Responses"] = {k: sorted(v, key=repr) for k, v in out["Responses"].items()}
    return out


def _error(error: dict[str, Any]) -> dict[str, Any]:
    """An error less the JS client's own spelling: it puts the code in front of the message
    and gives every cancellation reason an Item (null when none)."""
    out = dict(error)
    out["message"] = out["message"].removeprefix(f"{out['code']}: ")
    if "reasons" in out:
        out["reasons"] = [{k: v for k, v in r.items() if v is not None} for r in out["reasons"]]
    return out


def comparable(record: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"op": record["op"]}
    if "error" in record:
        out["error"] = _error(record["error"])
    elif s["pages"]:
        out["result"] = [_answer(page, s["params"]) for page in record["result"]]
    else:
        out["result"] = _answer(record["result"], s["params"])
    return _numbers_and_sets(out)


# -- the tests -----------------------------------------------------------------------


def _create_tables(client: Any) -> None:
    for name, keys in TABLES.items():
        extra = INDEXES if name == "sn" else {}
        client.create_table(
            TableName=t(name),
            KeySchema=[
                {"AttributeName": n, "KeyType": kind}
                for (n, _), kind in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": k} for n, k in keys]
            + extra.get("AttributeDefinitions", []),
            BillingMode="PAY_PER_REQUEST",
            **{k: v for k, v in extra.items() if k != "AttributeDefinitions"},
        )


@pytest.fixture(scope="module")
def direct(endpoints: Endpoints) -> Iterator[Any]:
    """The tables, behind the proxy and in the moto reached straight; that moto's client."""
    clients = [dynamodb_client(endpoints.upstream), dynamodb_client(endpoints.direct)]
    for client in clients:
        _create_tables(client)
    try:
        yield clients[1]
    finally:
        for client in clients:
            for name in TABLES:
                client.delete_table(TableName=t(name))


def _run(
    node: str, dax: str, http: str, steps: list[dict[str, Any]], tmp_path: Path, **env: str
) -> list[dict[str, Any]]:
    path = tmp_path / "steps.json"
    path.write_text(json.dumps(steps), encoding="utf-8")
    return run_scenario(node, SCRIPT, dax, http, str(path), env=env)


def _hits(s: dict[str, Any]) -> int:
    """How many hits a cached step's reads make: a batch's keys, else one."""
    requests = s["params"].get("RequestItems", {})
    return sum(len(r["Keys"]) for r in requests.values()) or 1


def _check(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], steps: list[Any]) -> None:
    assert [r["op"] for r in ours] == [s["op"] for s in steps]
    for number, (record, straight, s) in enumerate(zip(ours, theirs, steps, strict=True)):
        where = f"step {number} ({s['via']} {s['op']} {json.dumps(s['params'])[:300]})"
        if s["error"] is not None:
            assert record.get("error", {}).get("code") == s["error"], (where, record)
        else:
            assert "result" in record, (where, record)
        assert comparable(record, s) == comparable(straight, s), where
        if s["hits"] is not None:
            assert record["hits"] == _hits(s), (where, "not a cache hit", record)


def test_the_js_dax_client_gets_moto_s_answers_through_the_proxy(
    endpoints: Endpoints, direct: Any, tmp_path: Path
) -> None:
    node = node_with(PACKAGES, "the JavaScript DAX client test")
    port = endpoints.proxy.rsplit(":", 1)[1]
    ours = _run(node, f"dax://127.0.0.1:{port}", endpoints.proxy, STEPS, tmp_path)
    _check(ours, boto_steps(direct, STEPS), STEPS)
    cancelled = next(r for r in ours if r["op"] == "transactWriteItems" and "error" in r)
    failed, passed = cancelled["error"]["reasons"]
    assert (failed["Code"], passed["Code"]) == ("ConditionalCheckFailed", "None")
    assert failed["Item"]["sk"] == {"S": "tx"}  # the old item, its key put back by the client


def test_daxs_with_a_local_ca(endpoints: Endpoints, direct: Any, tmp_path: Path) -> None:
    """``daxs://`` on the proxy's TLS port: the JS client checks the certificate against
    Node's CAs plus NODE_EXTRA_CA_CERTS, and the host name against the endpoint's."""
    node = node_with(PACKAGES, "the JavaScript DAX client test")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    key = {"pk": {"S": "over tls"}}
    steps = [
        step("putItem", TableName=t("hs"), Item={**key, "v": {"SS": ["x"]}}),
        step("getItem", TableName=t("hs"), Key=key, hit=True),
        step("getItem", "http", TableName=t("hs"), Key=key, hit=True),
    ]
    tls = (
        "--tls-cert-file",
        str(tmp_path / "cert.pem"),
        "--tls-key-file",
        str(tmp_path / "key.pem"),
    )
    with running_proxy(
        "--upstream", endpoints.upstream, *tls, ca_file=str(tmp_path / "ca.pem")
    ) as proxy:
        ours = _run(
            node,
            f"daxs://127.0.0.1:{proxy.port}",
            proxy.url,
            steps,
            tmp_path,
            NODE_EXTRA_CA_CERTS=str(tmp_path / "ca.pem"),
        )
    _check(ours, boto_steps(direct, steps), steps)
