"""Where moto answers otherwise than DynamoDB, the proxy's answer is pinned against what
DynamoDB documents, with a fake upstream that answers as DynamoDB does.

The SDK suites (PynamoDB, the DocumentClient) compare the proxy with moto straight; these
three cases they cannot compare, because moto is wrong in them:

- a projection ``#n[1]`` (a list element through a name, as PynamoDB writes one): moto
  refuses it, "ExpressionAttributeNames unused in expressions"; DynamoDB accepts it and
  answers the element inside its list ("Specifying Item Attributes": a document path
  ``name[index]``; a projection keeps the path's structure);
- a ``Key`` whose attribute holds a map: moto answers an HTML 500; DynamoDB a 400
  ValidationException ("The provided key element does not match the schema"): a key
  attribute is S, N or B ("Primary key" in "Core components"). The proxy models no such
  key: it forwards the request unchanged and relays the answer, never caching it;
- ``ConsumedCapacity``: moto adds it to answers that did not ask; DynamoDB returns it only
  when ``ReturnConsumedCapacity`` is ``TOTAL`` or ``INDEXES`` (the API reference of each
  read). A hit answers so: nothing unasked, zero units asked.
"""

from __future__ import annotations

from typing import Any

import orjson

from daxproxy.core.config import Settings
from daxproxy.core.errors import ValidationException
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.service.upstream import UpstreamResponse
from tests.fakes import FakeTable, FakeUpstream, HeldDynamoDB, Sent


def proxy(upstream: Any) -> Proxy:
    return build_proxy(Settings(upstream="http://127.0.0.1:1"), upstream, clock=lambda: 1000.0)


def request(operation: str, **payload: Any) -> ClientRequest:
    target = f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), orjson.dumps(payload), target)


def cache_of(headers: Any) -> str:
    return str(dict(headers)["x-daxproxy-cache"])


ITEM = {"pk": {"S": "1"}, "l": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": True}]}}


async def test_a_list_element_through_a_name_is_projected_as_dynamodb_does() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", ITEM)
    p = proxy(fake)
    asked = {
        "TableName": "t",
        "Key": {"pk": {"S": "1"}},
        "ProjectionExpression": "#n[1]",
        "ExpressionAttributeNames": {"#n": "l"},
    }
    outcomes = []
    for _ in range(2):
        answer = await p.handle(request("GetItem", **asked))
        assert answer.status == 200, answer.body
        outcomes.append((orjson.loads(answer.body), cache_of(answer.headers)))
    expected = {"Item": {"l": {"L": [{"S": "two"}]}}}
    assert outcomes == [(expected, "miss"), (expected, "hit")]
    # The upstream read the whole item once, with no projection for moto to refuse.
    (get,) = [sent for sent in fake.sent if sent.target.operation == "GetItem"]
    assert "ProjectionExpression" not in orjson.loads(get.body)


async def test_a_key_holding_a_map_is_forwarded_and_dynamodbs_400_relayed() -> None:
    def as_dynamodb(sent: Sent) -> Any:
        if sent.target.operation == "DescribeTable":
            table = FakeTable("t").description()
            return UpstreamResponse(200, [], orjson.dumps({"Table": table}))
        return ValidationException("The provided key element does not match the schema")

    fake = FakeUpstream(answer=as_dynamodb)
    p = proxy(fake)
    body = {"TableName": "t", "Key": {"pk": {"M": {"x": {"S": "1"}}}}}
    for _ in range(2):
        answer = await p.handle(request("GetItem", **body))
        assert answer.status == 400
        error = orjson.loads(answer.body)
        assert error["__type"].endswith("#ValidationException")
        assert error["message"] == "The provided key element does not match the schema"
    gets = [sent for sent in fake.sent if sent.target.operation == "GetItem"]
    assert len(gets) == 2  # never cached: each went to DynamoDB
    assert all(orjson.loads(sent.body) == body for sent in gets)  # as the client sent it


async def test_a_hit_reports_capacity_only_when_asked() -> None:
    fake = HeldDynamoDB()
    fake.put_direct("t", ITEM)
    p = proxy(fake)
    key = {"pk": {"S": "1"}}
    await p.handle(request("GetItem", TableName="t", Key=key))  # the miss that fills
    unasked = await p.handle(request("GetItem", TableName="t", Key=key))
    assert cache_of(unasked.headers) == "hit"
    assert "ConsumedCapacity" not in orjson.loads(unasked.body)
    asked = await p.handle(
        request("GetItem", TableName="t", Key=key, ReturnConsumedCapacity="TOTAL")
    )
    assert cache_of(asked.headers) == "hit"
    assert orjson.loads(asked.body)["ConsumedCapacity"] == {"TableName": "t", "CapacityUnits": 0.0}
    batch = await p.handle(request("BatchGetItem", RequestItems={"t": {"Keys": [key]}}))
    assert cache_of(batch.headers) == "hit"
    assert "ConsumedCapacity" not in orjson.loads(batch.body)
