"""Projections of a cached item: what DynamoDB returns, and what the proxy leaves to DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from daxproxy.core.projection import ProjectionUnsupported, compile_projection, reserved_words

ITEM: dict[str, Any] = {
    "pk": {"S": "p"},
    "s": {"S": "text"},
    "n": {"N": "1"},
    "m": {
        "M": {
            "a": {"S": "A"},
            "b": {"M": {"c": {"N": "3"}, "d": {"L": [{"S": "d0"}, {"S": "d1"}]}}},
            "dash-name": {"S": "dashed"},
        }
    },
    "l": {
        "L": [
            {"S": "l0"},
            {"M": {"x": {"N": "10"}, "y": {"N": "11"}}},
            {"L": [{"N": "0"}, {"N": "1"}]},
        ]
    },
    "odd name": {"S": "spaced"},
}


def project(expression: str | None = None, names: dict[str, str] | None = None, **more: Any) -> Any:
    request: dict[str, Any] = dict(more)
    if expression is not None:
        request["ProjectionExpression"] = expression
    if names is not None:
        request["ExpressionAttributeNames"] = names
    projection = compile_projection(request)
    assert projection is not None
    return projection.apply(ITEM)


@pytest.mark.parametrize(
    ("expression", "names", "expected"),
    [
        ("s", None, {"s": {"S": "text"}}),
        ("s, n", None, {"s": {"S": "text"}, "n": {"N": "1"}}),
        ("  s ,n  ", None, {"s": {"S": "text"}, "n": {"N": "1"}}),
        ("nothere", None, {}),
        ("m.a", None, {"m": {"M": {"a": {"S": "A"}}}}),
        ("m.b.c", None, {"m": {"M": {"b": {"M": {"c": {"N": "3"}}}}}}),
        ("m.a, m.b.c", None, {"m": {"M": {"a": {"S": "A"}, "b": {"M": {"c": {"N": "3"}}}}}}),
        ("m.b.d[1]", None, {"m": {"M": {"b": {"M": {"d": {"L": [{"S": "d1"}]}}}}}}),
        ("l[0]", None, {"l": {"L": [{"S": "l0"}]}}),
        ("l[2], l[0]", None, {"l": {"L": [{"S": "l0"}, {"L": [{"N": "0"}, {"N": "1"}]}]}}),
        ("l[1].x", None, {"l": {"L": [{"M": {"x": {"N": "10"}}}]}}),
        ("l[1].x, l[1].y", None, {"l": {"L": [{"M": {"x": {"N": "10"}, "y": {"N": "11"}}}]}}),
        ("l[ 0 ]", None, {"l": {"L": [{"S": "l0"}]}}),
        ("l[9]", None, {}),
        ("s.x", None, {}),
        ("s[0]", None, {}),
        ("m.zz", None, {}),
        ("m.a.b", None, {}),
        ("l[1].zz, s", None, {"s": {"S": "text"}}),
        ("#o", {"#o": "odd name"}, {"odd name": {"S": "spaced"}}),
        ("m.#d", {"#d": "dash-name"}, {"m": {"M": {"dash-name": {"S": "dashed"}}}}),
        (
            "#m.#a, #s",
            {"#m": "m", "#a": "a", "#s": "s"},
            {"m": {"M": {"a": {"S": "A"}}}, "s": {"S": "text"}},
        ),
        ("#size", {"#size": "s"}, {"s": {"S": "text"}}),
    ],
)
def test_projection_expressions(
    expression: str, names: dict[str, str] | None, expected: Any
) -> None:
    assert project(expression, names) == expected


def test_attributes_to_get() -> None:
    assert project(AttributesToGet=["s", "nothere", "m"]) == {"s": ITEM["s"], "m": ITEM["m"]}


def test_no_projection_means_the_whole_item() -> None:
    assert compile_projection({"TableName": "t", "Key": {}}) is None


def test_the_cached_item_is_never_changed() -> None:
    before = repr(ITEM)
    result = project("m.b.d[0], l[1].x")
    result["m"]["M"]["b"]["M"]["d"]["L"].append("mutated")
    assert repr(ITEM) == before


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        ({"ProjectionExpression": ""}, "empty"),
        ({"ProjectionExpression": "  "}, "blank"),
        ({"ProjectionExpression": "a,"}, "trailing comma"),
        ({"ProjectionExpression": ",a"}, "leading comma"),
        ({"ProjectionExpression": "a..b"}, "double dot"),
        ({"ProjectionExpression": "a."}, "dangling dot"),
        ({"ProjectionExpression": "[0]"}, "index without a name"),
        ({"ProjectionExpression": "a.[0]"}, "index after a dot"),
        ({"ProjectionExpression": "a[x]"}, "not a number"),
        ({"ProjectionExpression": "a[0][1]"}, "a list of lists: left to DynamoDB"),
        ({"ProjectionExpression": "a b"}, "two names"),
        ({"ProjectionExpression": "a-b"}, "a dash needs a placeholder"),
        ({"ProjectionExpression": "1a"}, "a leading digit needs a placeholder"),
        ({"ProjectionExpression": "size"}, "a reserved word"),
        ({"ProjectionExpression": "Name"}, "a reserved word, in any case"),
        ({"ProjectionExpression": "a, a"}, "duplicate paths"),
        ({"ProjectionExpression": "a, a.b"}, "overlapping paths"),
        ({"ProjectionExpression": "a.b, a"}, "overlapping paths, the other way"),
        ({"ProjectionExpression": "a[0], a[0].b"}, "overlapping list paths"),
        ({"ProjectionExpression": "a.b, a[0]"}, "conflicting paths"),
        ({"ProjectionExpression": "#a"}, "undefined placeholder"),
        ({"ProjectionExpression": "a", "ExpressionAttributeNames": {"#b": "b"}}, "unused name"),
        ({"ProjectionExpression": "#a", "ExpressionAttributeNames": {"#a": ""}}, "empty name"),
        (
            {"ProjectionExpression": "#a", "ExpressionAttributeNames": {"a": "a", "#a": "a"}},
            "bad key",
        ),
        ({"ProjectionExpression": 5}, "not a string"),
        ({"ProjectionExpression": "a" * 5000}, "too long"),
        ({"ExpressionAttributeNames": {"#a": "a"}}, "names without an expression"),
        ({"AttributesToGet": []}, "empty list"),
        ({"AttributesToGet": ["a", "a"]}, "duplicates"),
        ({"AttributesToGet": ["a"], "ProjectionExpression": "a"}, "both forms"),
        ({"AttributesToGet": "a"}, "not a list"),
    ],
)
def test_what_dynamodb_rejects_is_left_to_dynamodb(request_: dict[str, Any], why: str) -> None:
    with pytest.raises(ProjectionUnsupported):
        compile_projection(request_)


def test_reserved_words_are_dynamodbs_list() -> None:
    words = reserved_words()
    assert len(words) == 573
    assert {"SIZE", "NAME", "STATUS", "DATA", "KEY", "TTL"} <= words
    assert "PK" not in words
