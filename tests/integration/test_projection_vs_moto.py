"""Projections applied to the cached item equal moto's own projection of the same item.

One item with nested maps, lists, sets and binary sits behind the proxy and on the direct
moto server. Each expression is read through the proxy (the first read fills the cache, the
rest are hits, all projected by daxproxy) and straight from moto, and the answers must match.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from tests.integration.conftest import Endpoints
from tests.integration.harness import REGION, normalize

ITEM: dict[str, Any] = {
    "pk": {"S": "item"},
    "title": {"S": "A title"},
    "price": {"N": "12.50"},
    "tags": {"SS": ["new", "sale"]},
    "blob": {"B": b"\x01\x02"},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
    "info": {
        "M": {
            "rating": {"N": "4"},
            "sizes": {"L": [{"S": "S"}, {"S": "M"}, {"S": "L"}]},
            "maker": {"M": {"city": {"S": "Oslo"}, "zip": {"S": "0150"}}},
            "dotted.name": {"S": "needs a placeholder"},
        }
    },
    "reviews": {
        "L": [
            {"M": {"stars": {"N": "5"}, "author": {"S": "ann"}}},
            {"M": {"stars": {"N": "2"}, "author": {"S": "bob"}}},
            {"L": [{"N": "7"}, {"N": "8"}]},
        ]
    },
    "my-attr": {"S": "dashed"},
}

# (ProjectionExpression, ExpressionAttributeNames)
EXPRESSIONS: list[tuple[str, dict[str, str] | None]] = [
    ("title", None),
    ("title, price", None),
    ("price,title , tags", None),
    ("tags", None),
    ("#b", {"#b": "blob"}),
    ("flag, nothing", None),
    ("absent", None),
    ("title, absent", None),
    ("info", None),
    ("info.rating", None),
    ("info.sizes", None),
    ("info.sizes[0]", None),
    ("info.sizes[2]", None),
    ("info.sizes[5]", None),
    ("info.maker.city", None),
    ("info.maker.city, info.rating", None),
    ("info.maker.absent", None),
    ("reviews[0]", None),
    ("reviews[1].stars", None),
    ("reviews[2]", None),
    ("reviews[9].stars", None),
    ("title[0]", None),
    ("#t", {"#t": "title"}),
    ("#i.#r", {"#i": "info", "#r": "rating"}),
    ("info.#d", {"#d": "dotted.name"}),
    ("#m", {"#m": "my-attr"}),
    ("#n, #s", {"#n": "name", "#s": "status"}),
    ("#i.sizes[1], #t", {"#i": "info", "#t": "title"}),
    ("info.maker, title", None),
    ("reviews[1], info.sizes[0]", None),
]


@pytest.fixture(scope="module")
def table(endpoints: Endpoints) -> str:
    name = f"projection-{uuid.uuid4().hex[:8]}"
    for url in (endpoints.upstream, endpoints.direct):
        client = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName=name, Item=ITEM)
    return name


@pytest.mark.parametrize(("expression", "names"), EXPRESSIONS)
def test_projection_equals_motos(
    endpoints: Endpoints, table: str, expression: str, names: dict[str, str] | None
) -> None:
    request: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": "item"}},
        "ProjectionExpression": expression,
    }
    if names:
        request["ExpressionAttributeNames"] = names
    proxy = boto3.client("dynamodb", endpoint_url=endpoints.proxy, region_name=REGION)
    direct = boto3.client("dynamodb", endpoint_url=endpoints.direct, region_name=REGION)
    through = proxy.get_item(**request)
    assert through["ResponseMetadata"]["HTTPHeaders"]["x-daxproxy-cache"] in ("hit", "miss")
    assert normalize(through.get("Item")) == normalize(direct.get_item(**request).get("Item"))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "info.sizes[2], info.sizes[0]",
            {"info": {"M": {"sizes": {"L": [{"S": "S"}, {"S": "L"}]}}}},
        ),
        (
            "reviews[0].author, reviews[0].stars",
            {"reviews": {"L": [{"M": {"author": {"S": "ann"}, "stars": {"N": "5"}}}]}},
        ),
    ],
)
def test_several_paths_into_one_list_merge(
    endpoints: Endpoints, table: str, expression: str, expected: dict[str, Any]
) -> None:
    # moto keeps only the first of several paths into one list; DynamoDB returns every
    # selected element in index order, each with all its selected members (Developer
    # Guide, "Projection expressions" and "Specifying item attributes": document paths).
    proxy = boto3.client("dynamodb", endpoint_url=endpoints.proxy, region_name=REGION)
    answer = proxy.get_item(
        TableName=table, Key={"pk": {"S": "item"}}, ProjectionExpression=expression
    )
    assert answer["Item"] == expected
