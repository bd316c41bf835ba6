"""daxproxy's projections of a cached item equal moto's own GetItem answers for that item.

One item with nested maps, lists, lists of lists, sets, binary and awkward names sits on a
moto server. The full item, as moto sends it on the wire, plays the cached item: each
projection applied to it by daxproxy.core.projection must equal moto's answer to GetItem and
BatchGetItem with the same projection (AttributesToGet: BatchGetItem only, as moto's GetItem
ignores it). Where moto departs from DynamoDB's documented behaviour, the case pins
DynamoDB's answer instead and its comparison with moto is a strict xfail, so that a moto that
learns the rule makes the suite say so. Every request the module rejects is sent to moto
too, which must reject it as well, unless it is one that moto does not validate.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from daxproxy.core.projection import Projection, ProjectionUnsupported, compile_projection
from daxproxy.service.embedded import MotoServer
from tests.integration.harness import REGION

KEY = {"pk": {"S": "item"}}

ITEM: dict[str, Any] = {
    "pk": {"S": "item"},
    "title": {"S": "A title"},
    "price": {"N": "12.5"},
    "tags": {"SS": ["new", "sale"]},
    "nums": {"NS": ["1", "2.5"]},
    "blob": {"B": b"\x01\x02"},  # BLOB is a reserved word
    "blobs": {"BS": [b"\x01", b"\x02"]},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
    "none_yet": {"L": []},
    "under_score": {"S": "u"},
    "info": {
        "M": {
            "rating": {"N": "4"},
            "sizes": {"L": [{"S": "S"}, {"S": "M"}, {"S": "L"}]},
            "maker": {"M": {"city": {"S": "Oslo"}, "zip": {"S": "0150"}}},
            "empty": {"M": {}},
            "dotted.name": {"S": "needs a placeholder"},
            "my-key": {"S": "so does this"},
        }
    },
    "reviews": {
        "L": [
            {"M": {"stars": {"N": "5"}, "author": {"S": "ann"}}},
            {"M": {"stars": {"N": "2"}, "author": {"S": "bob"}}},
            {"L": [{"N": "7"}, {"N": "8"}]},
            {"S": "plain"},
        ]
    },
    "matrix": {"L": [{"L": [{"N": "1"}, {"N": "2"}]}, {"L": [{"N": "3"}, {"N": "4"}]}]},
    "my-attr": {"S": "dashed"},
    "odd name": {"S": "spaced"},
    "name": {"S": "a reserved word"},
    "status": {"S": "another"},
    "a.b": {"S": "one attribute whose name has a dot"},
    "a": {"M": {"b": {"S": "member b of map a"}}},
}

# (ProjectionExpression, ExpressionAttributeNames): moto and DynamoDB agree on these.
COMPARED: list[tuple[str, dict[str, str] | None]] = [
    ("title", None),
    ("title, price", None),
    ("price,title , tags", None),
    ("  title  ", None),
    ("tags, nums", None),
    ("#b, blobs", {"#b": "blob"}),
    ("flag, nothing, none_yet", None),
    ("under_score", None),
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
    ("info.maker, title", None),
    ("info.maker.absent", None),
    ("info.#e", {"#e": "empty"}),
    ("info.#d", {"#d": "dotted.name"}),
    ("info.#k, info.rating", {"#k": "my-key"}),
    ("reviews[0]", None),
    ("reviews[1].stars", None),
    ("reviews[2]", None),
    ("reviews[9].stars", None),
    ("reviews[3].stars", None),
    ("reviews[1], info.sizes[0]", None),
    ("info.sizes, reviews[0].author", None),
    ("matrix[1]", None),
    ("title[0]", None),
    ("tags[0]", None),
    ("#t", {"#t": "title"}),
    ("#i.#r", {"#i": "info", "#r": "rating"}),
    ("#i.sizes[1], #t", {"#i": "info", "#t": "title"}),
    ("#m", {"#m": "my-attr"}),
    ("#n, #s", {"#n": "name", "#s": "status"}),
    ("#o", {"#o": "odd name"}),
    ("#ab", {"#ab": "a.b"}),
    ("a.b", None),
]

# Where moto departs from DynamoDB: (expression, names, DynamoDB's answer, why moto differs).
# DynamoDB's answers: Developer Guide, "Specifying item attributes when using expressions"
# (document paths; "ThisList[5][11] refers to the twelfth element" of a nested list), and the
# suites dynalite and Alternator run against DynamoDB (all selected elements of one list, in
# index order, each with all its selected members; blanks between tokens in dynalite's
# grammar; nothing for a step into a scalar).
MOTO_DIFFERS: list[tuple[str, dict[str, str] | None, dict[str, Any], str]] = [
    (
        "info.sizes[2], info.sizes[0]",
        None,
        {"info": {"M": {"sizes": {"L": [{"S": "S"}, {"S": "L"}]}}}},
        "moto keeps only the last path into a list",
    ),
    (
        "reviews[0].author, reviews[0].stars",
        None,
        {"reviews": {"L": [{"M": {"author": {"S": "ann"}, "stars": {"N": "5"}}}]}},
        "moto keeps only the last path into a list",
    ),
    (
        "matrix[1][0]",
        None,
        {"matrix": {"L": [{"L": [{"N": "3"}]}]}},
        "moto does not read a list of lists (ThisList[5][11] in the guide)",
    ),
    (
        "matrix[1][1], matrix[0][0]",
        None,
        {"matrix": {"L": [{"L": [{"N": "1"}]}, {"L": [{"N": "4"}]}]}},
        "moto does not read a list of lists",
    ),
    (
        "#r[1].stars",
        {"#r": "reviews"},
        {"reviews": {"L": [{"M": {"stars": {"N": "2"}}}]}},
        "moto does not resolve a placeholder followed by an index",
    ),
    (
        "info . rating, reviews [1] . stars",
        None,
        {"info": {"M": {"rating": {"N": "4"}}}, "reviews": {"L": [{"M": {"stars": {"N": "2"}}}]}},
        "moto rejects blanks inside a path; dynalite's grammar takes them",
    ),
    ("flag.x", None, {}, "moto answers HTTP 500 when a path steps into a BOOL"),
]

# AttributesToGet: moto's GetItem ignores it, so these compare with moto's BatchGetItem.
ATTRIBUTES_TO_GET: list[list[str]] = [
    ["title"],
    ["title", "absent"],
    ["a.b"],
    ["name", "odd name"],
    ["info", "reviews", "blob"],
    ["absent"],
]


def _expression(expression: str, names: dict[str, str] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"ProjectionExpression": expression}
    if names is not None:
        request["ExpressionAttributeNames"] = names
    return request


# Requests the module rejects: (test id, request, None when moto rejects it too, or how
# moto departs from DynamoDB on it).
MOTO_ACCEPTS = "moto serves it"
MOTO_CRASHES = "moto answers HTTP 500, not a ValidationException"
REJECTED: list[tuple[str, dict[str, Any], str | None]] = [
    ("empty", _expression("", None), None),
    ("duplicate", _expression("title, title", None), None),
    ("reserved", _expression("name", None), None),
    ("reserved-mixed-case", _expression("Status", None), None),
    ("leading-digit", _expression("1a", None), None),
    ("two-names", _expression("title x", None), None),
    ("unused-name", _expression("title", {"#x": "title"}), None),
    ("one-unused-name", _expression("#x", {"#x": "title", "#y": "price"}), None),
    ("key-without-pound", _expression("#x", {"#x": "title", "x": "title"}), None),
    ("empty-names", _expression("title", {}), None),
    ("names-alone", {"ExpressionAttributeNames": {"#x": "title"}}, None),
    ("both-forms", {"ProjectionExpression": "title", "AttributesToGet": ["title"]}, None),
    # Reserved words anywhere in a path ("Reserved words in DynamoDB"; dynalite: a.abORt).
    ("reserved-nested", _expression("info.size", None), MOTO_ACCEPTS),
    ("reserved-nested-2", _expression("info.empty", None), MOTO_ACCEPTS),
    # "Syntax error; token: ..." (dynalite's getItem tests; AWS SDK issues quote DynamoDB's
    # answers to "a-type" and "_type").
    ("underscore-first", _expression("_x", None), MOTO_ACCEPTS),
    ("dash", _expression("my-attr", None), MOTO_ACCEPTS),
    ("double-dot", _expression("a..b", None), MOTO_ACCEPTS),
    ("name-as-index", _expression("a[b]", None), MOTO_ACCEPTS),
    ("parentheses", _expression("(a)", None), MOTO_ACCEPTS),
    ("negative-index", _expression("reviews[-1]", None), MOTO_ACCEPTS),  # guide: invalid
    ("trailing-comma", _expression("title,", None), MOTO_CRASHES),
    ("leading-comma", _expression(",title", None), MOTO_CRASHES),
    ("empty-path", _expression("title,,price", None), MOTO_CRASHES),
    ("blank", _expression("   ", None), MOTO_CRASHES),
    # "An expression attribute name used in the document path is not defined" (dynalite).
    ("undefined-name", _expression("#x", None), MOTO_ACCEPTS),
    # "Two document paths overlap / conflict with each other" (Alternator's suite).
    ("overlap", _expression("title, title.x", None), MOTO_ACCEPTS),
    ("overlap-by-names", _expression("#x, #y", {"#x": "a", "#y": "a"}), MOTO_ACCEPTS),
    ("conflict", _expression("a.b, a[0]", None), MOTO_ACCEPTS),
    # "Key attributes must be scalars; list random access '[]' and map lookup '.' are not
    # allowed" (dynalite's getItem tests).
    ("key-member", _expression("pk.x", None), MOTO_ACCEPTS),
    # "The document path has too many nesting levels" (Alternator's suite).
    ("33-levels", _expression("a" + ".b" * 32, None), MOTO_ACCEPTS),
    # Not documented either way, so left to DynamoDB; the guide asks for a letter or digit
    # as a bare name's second character.
    ("underscore-second", _expression("a_b", None), MOTO_ACCEPTS),
    ("leading-zero", _expression("reviews[01]", None), MOTO_ACCEPTS),
]


class Moto:
    """A boto3 client on a moto server that also keeps each answer as moto sent it."""

    def __init__(self, url: str) -> None:
        config = Config(retries={"total_max_attempts": 1})  # a moto 500 is an answer here
        self.client = boto3.client("dynamodb", endpoint_url=url, region_name=REGION, config=config)
        self.client.meta.events.register("after-call.dynamodb", self._keep)
        self._body = b""
        self.table = f"projection-{uuid.uuid4().hex[:8]}"

    def _keep(self, http_response: Any, **_: Any) -> None:
        self._body = http_response.content

    def get_item(self, **request: Any) -> dict[str, Any]:
        """GetItem's answer, as JSON on the wire."""
        self.client.get_item(TableName=self.table, Key=KEY, **request)
        return dict(orjson.loads(self._body))

    def batch_get_item(self, **entry: Any) -> dict[str, Any]:
        self.client.batch_get_item(RequestItems={self.table: {"Keys": [KEY], **entry}})
        return dict(orjson.loads(self._body))


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = MotoServer()
    server.launch()
    try:
        server.wait_ready_sync()
        moto = Moto(server.url)
        moto.client.create_table(
            TableName=moto.table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        moto.client.put_item(TableName=moto.table, Item=ITEM)
        yield moto
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cached(moto: Moto) -> dict[str, Any]:
    """The full item as the proxy caches it: DynamoDB JSON from the wire, binary in base64."""
    return dict(moto.get_item()["Item"])


def unordered_sets(value: Any) -> Any:
    """Sets are unordered: moto rebuilds them, so their members may come back reordered."""
    if isinstance(value, dict):
        return {
            k: sorted(v) if k in ("SS", "NS", "BS") else unordered_sets(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [unordered_sets(v) for v in value]
    return value


def projected(request: dict[str, Any], item: dict[str, Any]) -> Any:
    projection = compile_projection({"Key": KEY, **request})
    assert isinstance(projection, Projection)
    return unordered_sets(projection.apply(item))


@pytest.mark.parametrize(("expression", "names"), COMPARED)
def test_projection_equals_motos(
    moto: Moto, cached: dict[str, Any], expression: str, names: dict[str, str] | None
) -> None:
    request = _expression(expression, names)
    ours = projected(request, cached)
    assert unordered_sets(moto.get_item(**request)["Item"]) == ours
    batch = moto.batch_get_item(**request)["Responses"][moto.table]
    assert unordered_sets(batch) == [ours]


@pytest.mark.parametrize("attributes", ATTRIBUTES_TO_GET)
def test_attributes_to_get_equals_motos_batch_get(
    moto: Moto, cached: dict[str, Any], attributes: list[str]
) -> None:
    ours = projected({"AttributesToGet": attributes}, cached)
    batch = moto.batch_get_item(AttributesToGet=attributes)["Responses"][moto.table]
    assert unordered_sets(batch) == [ours]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="moto's GetItem ignores it")
def test_attributes_to_get_equals_motos_get_item(moto: Moto, cached: dict[str, Any]) -> None:
    ours = projected({"AttributesToGet": ["title"]}, cached)
    assert moto.get_item(AttributesToGet=["title"])["Item"] == ours


@pytest.mark.parametrize(("expression", "names", "dynamodb"), [case[:3] for case in MOTO_DIFFERS])
def test_where_moto_differs_the_module_answers_as_dynamodb(
    cached: dict[str, Any], expression: str, names: dict[str, str] | None, dynamodb: Any
) -> None:
    assert projected(_expression(expression, names), cached) == dynamodb


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        pytest.param(
            expression,
            names,
            marks=pytest.mark.xfail(strict=True, raises=(AssertionError, ClientError), reason=why),
        )
        for expression, names, _, why in MOTO_DIFFERS
    ],
)
def test_where_moto_differs_it_still_does(
    moto: Moto, cached: dict[str, Any], expression: str, names: dict[str, str] | None
) -> None:
    request = _expression(expression, names)
    assert unordered_sets(moto.get_item(**request).get("Item")) == projected(request, cached)


@pytest.mark.parametrize(
    "request_", [pytest.param(request, id=name) for name, request, _ in REJECTED]
)
def test_the_module_rejects(request_: dict[str, Any]) -> None:
    with pytest.raises(ProjectionUnsupported):
        compile_projection({"Key": KEY, **request_})


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(
            request,
            id=name,
            marks=[
                pytest.mark.xfail(
                    strict=True, raises=(pytest.fail.Exception, AssertionError), reason=difference
                )
            ]
            if difference
            else [],
        )
        for name, request, difference in REJECTED
    ],
)
def test_what_the_module_rejects_moto_rejects(moto: Moto, request_: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        moto.get_item(**request_)
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def test_an_item_without_the_projected_attributes_is_an_empty_item(moto: Moto) -> None:
    # DynamoDB answers {"Item": {}} here (Alternator's test_projection_expression_path), and
    # so does moto, for GetItem and BatchGetItem alike; a missing key has no Item at all.
    assert moto.get_item(ProjectionExpression="absent") == {"Item": {}}
    assert moto.get_item(ProjectionExpression="info.absent, reviews[7]") == {"Item": {}}
    assert moto.batch_get_item(ProjectionExpression="absent")["Responses"] == {moto.table: [{}]}
    assert moto.batch_get_item(AttributesToGet=["absent"])["Responses"] == {moto.table: [{}]}
    answer = moto.client.get_item(
        TableName=moto.table, Key={"pk": {"S": "no such item"}}, ProjectionExpression="absent"
    )
    assert "Item" not in answer
