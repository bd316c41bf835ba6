"""Projections with list indexes over DAX: what is asked of DynamoDB, what the real Python
client rebuilds from the reply, and DynamoDB's refusals of the client's own paths.

DynamoDB's answer is pinned by the project's model of it (``core.projection``: the selected
elements of a list packed in index order, an element with nothing selected left out).
"""

from __future__ import annotations

from typing import Any

import pytest
from amazondax import CborSExprGenerator
from hypothesis import given
from hypothesis import strategies as st

from daxproxy.core.keys import KeySchema
from daxproxy.core.projection import compile_projection
from daxproxy.dax import calls, list_paths, methods
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.batches import batch_get_payload, batch_get_reply
from daxproxy.dax.expressions import Path, Renderer
from daxproxy.dax.queries import read_reply, scan_payload
from daxproxy.dax.session import Request, Session
from daxproxy.dax.transactions import transact_get_payload, transact_get_reply
from tests.unit.dax.real_client import drive

SCHEMA = KeySchema("pk", "S")
KEY = {"pk": {"S": "u1"}}
ITEM = {
    **KEY,
    "l": {"L": [{"S": "a"}, {"S": "b"}, {"S": "c"}, {"S": "d"}]},
    "m": {
        "M": {
            "l": {
                "L": [
                    {"M": {"x": {"N": "0"}, "y": {"N": "1"}}},
                    {"M": {"y": {"N": "2"}}},
                    {"L": [{"S": "deep"}]},
                    {"M": {"x": {"N": "3"}}},
                ]
            }
        }
    },
    "name": {"S": "n"},
}


def _sent(call: Any, reply: bytes = b"\x80\xf6") -> Request:
    """The one data request the client sent for ``call`` (``reply``: one it reads whole,
    so that it does not wait for more)."""
    _, sent = drive(call, calls.key_schema_reply(SCHEMA) + reply)
    [request] = [
        r
        for r in Session(max_bytes=1 << 20).receive(sent)
        if r.method not in (methods.AUTHORIZE_CONNECTION, methods.DEFINE_KEY_SCHEMA)
    ]
    return request


def _dynamodb(expression: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    """DynamoDB's projection of ITEM, as the project models it."""
    request: dict[str, Any] = {"Key": KEY, "ProjectionExpression": expression}
    if names:
        request["ExpressionAttributeNames"] = names
    projection = compile_projection(request)
    assert projection is not None
    return projection.apply(ITEM)


def _project(item: dict[str, Any], text: str, names: dict[str, str]) -> dict[str, Any]:
    """What DynamoDB answers to the projection the proxy sent (names only: no packing)."""
    projection = compile_projection(
        {"Key": KEY, "ProjectionExpression": text, "ExpressionAttributeNames": names}
    )
    assert projection is not None
    return projection.apply(item)


CASES = [
    "l[1], l[3]",
    "l[3], l[1]",
    "l[0], l[9]",
    "m.l[1].x, m.l[3].x, m.l[0].y",
    "m.l[2][0], m.l[0].x, #n",
    "l[2], m.l[3], absent[0], #n",
]


@pytest.mark.parametrize("expression", CASES)
def test_get_item_answers_as_dynamodb_projects(expression: str) -> None:
    names = {"#n": "name"} if "#n" in expression else None

    def get(c: Any) -> Any:
        extra = {"ExpressionAttributeNames": names} if names else {}
        return c.get_item(TableName="T", Key=KEY, ProjectionExpression=expression, **extra)

    payload, paths = calls.get_item_payload(_sent(get).args, SCHEMA)
    # DynamoDB is asked for whole lists, names only, and every placeholder is used.
    assert "[" not in payload["ProjectionExpression"]
    answer = {
        "Item": _project(ITEM, payload["ProjectionExpression"], payload["ExpressionAttributeNames"])
    }
    reply = calls.get_item_reply(answer, SCHEMA, AttributeLists(), paths)
    result, _ = drive(get, calls.key_schema_reply(SCHEMA) + reply)
    assert result == {"Item": _dynamodb(expression, names)}


def test_the_paths_asked_are_cut_before_the_first_index_once_each() -> None:
    paths = [("m", "l", 1, "x"), ("l", 0), ("m", "l", 3), ("l", 2, 0), ("name",)]
    assert list_paths.fetched(paths, SCHEMA.names, 40) == [("m", "l"), ("l",), ("name",)]


def test_scan_batch_get_and_transact_get_answer_as_dynamodb_projects() -> None:
    expression = "m.l[1].y, l[3], m.l[0].x"
    want = _dynamodb(expression)
    lists = AttributeLists()

    def scan(c: Any) -> Any:
        return c.scan(TableName="T", ProjectionExpression=expression)

    empty = read_reply({"Items": []}, SCHEMA, lists, None, False)
    payload, paths = scan_payload(_sent(scan, empty).args, SCHEMA)
    item = _project(ITEM, payload["ProjectionExpression"], payload["ExpressionAttributeNames"])
    reply = read_reply(
        {"Items": [item], "Count": 1, "ScannedCount": 1}, SCHEMA, lists, paths, False
    )
    result, _ = drive(scan, calls.key_schema_reply(SCHEMA) + reply)
    assert result["Items"] == [want]

    def batch(c: Any) -> Any:
        request = {"Keys": [KEY], "ProjectionExpression": expression}
        return c.batch_get_item(RequestItems={"T": request})

    request = _sent(batch, batch_get_reply({}, {}, lists, {}))
    schemas = {"T": SCHEMA}
    payload, table_paths = batch_get_payload(request.args, schemas)
    sent = payload["RequestItems"]["T"]
    item = _project(ITEM, sent["ProjectionExpression"], sent["ExpressionAttributeNames"])
    reply = batch_get_reply({"Responses": {"T": [item]}}, schemas, lists, table_paths)
    result, _ = drive(batch, calls.key_schema_reply(SCHEMA) + reply)
    assert result["Responses"] == {"T": [want]}

    def transact(c: Any) -> Any:
        get = {"TableName": "T", "Key": KEY, "ProjectionExpression": expression}
        return c.transact_get_items(TransactItems=[{"Get": get}])

    empty = transact_get_reply({"Responses": [{}]}, schemas, ["T"], lists, [None])
    payload, get_paths = transact_get_payload(_sent(transact, empty).args, schemas)
    get = payload["TransactItems"][0]["Get"]
    item = _project(ITEM, get["ProjectionExpression"], get["ExpressionAttributeNames"])
    reply = transact_get_reply({"Responses": [{"Item": item}]}, schemas, ["T"], lists, get_paths)
    result, _ = drive(transact, calls.key_schema_reply(SCHEMA) + reply)
    assert result["Responses"] == [{"Item": want}]


def _refused(expression: str) -> str:
    def get(c: Any) -> Any:
        return c.get_item(TableName="T", Key=KEY, ProjectionExpression=expression)

    with pytest.raises(calls.CallError) as caught:
        calls.get_item_payload(_sent(get).args, SCHEMA)
    assert caught.value.type == "ValidationException"
    return caught.value.message


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "l[0], l[0]",
            "Invalid ProjectionExpression: Two document paths overlap with each other; must "
            "remove or rewrite one of these paths; path one: [l, [0]], path two: [l, [0]]",
        ),
        (
            "l, l[1]",
            "Invalid ProjectionExpression: Two document paths overlap with each other; must "
            "remove or rewrite one of these paths; path one: [l], path two: [l, [1]]",
        ),
        (
            "m.l[1].x, m.l[1]",
            "Invalid ProjectionExpression: Two document paths overlap with each other; must "
            "remove or rewrite one of these paths; path one: [m, l, [1], x], path two: [m, l, [1]]",
        ),
        (
            "m.x, m[0]",
            "Invalid ProjectionExpression: Two document paths conflict with each other; must "
            "remove or rewrite one of these paths; path one: [m, x], path two: [m, [0]]",
        ),
        # An overlap is reported before a conflict found earlier.
        (
            "m.x, m[0], l[0], l[0]",
            "Invalid ProjectionExpression: Two document paths overlap with each other; must "
            "remove or rewrite one of these paths; path one: [l, [0]], path two: [l, [0]]",
        ),
        (
            "pk[0]",
            "Key attributes must be scalars; list random access '[]' and map lookup '.' are "
            "not allowed: Key: pk",
        ),
        (
            "l[0]" + "[0]" * 32,
            "Invalid ProjectionExpression: The document path has too many nesting levels; "
            "nesting levels: 34",
        ),
    ],
)
def test_what_dynamodb_refuses_is_refused_in_its_words(expression: str, message: str) -> None:
    """Each of these cut before its index would pass DynamoDB: the client's paths are checked."""
    assert _refused(expression) == message


def test_thirty_two_levels_with_an_index_are_served() -> None:
    def get(c: Any) -> Any:
        return c.get_item(TableName="T", Key=KEY, ProjectionExpression="l" + "[0]" * 31)

    payload, _ = calls.get_item_payload(_sent(get).args, SCHEMA)
    assert payload["ProjectionExpression"] == "#n0"


def test_a_step_into_an_index_key_is_refused_in_dynamodbs_words() -> None:
    list_paths.check_index_keys([("l", 0), ("m", "x")], {"g"})
    with pytest.raises(list_paths.Refused) as caught:
        list_paths.check_index_keys([("l", 0), ("g", 0)], {"g"})
    assert str(caught.value) == (
        "Key attributes must be scalars; list random access '[]' and map lookup '.' are "
        "not allowed: IndexKey: g"
    )


def test_a_text_longer_than_dynamodb_takes_is_refused() -> None:
    """4096 bytes of text pass and 4097 do not, measured on the text the proxy would send
    for the client's paths (cut, it would be short enough)."""
    paths: list[Path] = [("l", i) for i in range(1000)]
    assert list_paths.fetched(paths, (), 4096) == [("l",)]
    with pytest.raises(list_paths.Refused) as caught:
        list_paths.fetched(paths, (), 4097)
    assert str(caught.value) == (
        "Invalid ProjectionExpression: Expression size has exceeded the maximum allowed "
        "size; expression size: 4097"
    )
    expression = ", ".join(f"l[{i}]" for i in range(1000))
    data = CborSExprGenerator.encode_projection_expression(expression, {}, {})
    renderer = Renderer()
    size = renderer.size(renderer.projection(data))
    assert size == len(", ".join(f"#n0[{i}]" for i in range(1000)))
    with pytest.raises(calls.CallError, match=f"expression size: {size}$"):
        calls.projection({}, {methods.Param.PROJECTION_EXPRESSION: data}, Renderer(), SCHEMA)


def test_the_size_counts_placeholders_a_shared_renderer_already_gave() -> None:
    renderer = Renderer()
    renderer.text(("first", "second"))
    assert renderer.size([("second", 3), ("third",)]) == len("#n1[3], #n2")
    assert renderer.names == {"#n0": "first", "#n1": "second"}  # none kept


def _pairwise(paths: list[Path]) -> str | None:
    """The reference: every pair compared, in order, as dynalite compares them."""
    conflict = None
    for i, path in enumerate(paths):
        for earlier in paths[:i]:
            kind: str | None = "overlap"
            for a, b in zip(earlier, path, strict=False):
                if isinstance(a, int) != isinstance(b, int):
                    kind = "conflict"
                    break
                if a != b:
                    kind = None
                    break
            if kind == "overlap":
                return list_paths._pair_message(kind, earlier, path)
            if kind == "conflict" and conflict is None:
                conflict = list_paths._pair_message(kind, earlier, path)
    return conflict


_STEP = st.sampled_from(["a", "b"]) | st.integers(0, 1)
_PATH = st.builds(
    lambda head, rest: (head, *rest), st.sampled_from(["a", "b"]), st.lists(_STEP, max_size=3)
)


@given(st.lists(_PATH, min_size=1, max_size=6))
def test_the_checks_find_the_pair_every_pair_compared_finds(paths: list[Path]) -> None:
    """check() finds the clashes in time linear in the steps; comparing every pair is the
    plain statement of the rule."""
    try:
        list_paths.check(paths, ())
        got = None
    except list_paths.Refused as error:
        got = str(error)
    assert got == _pairwise(paths)
