"""Compiled expressions rendered back to text: the client's own compiler is the oracle.

Each expression is compiled by the Python client (``CborSExprGenerator``), rendered by
:class:`Renderer`, and the rendered text with its fresh placeholders compiled again by the
client: the two trees must be the same bytes.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from amazondax import CborSExprGenerator as client

from daxproxy.dax import cbor
from daxproxy.dax.expressions import BadExpression, Renderer

NAMES = {"#p": "pk", "#n": "name", "#s": "size"}
VALUES: dict[str, Any] = {
    ":v": {"S": "bob"},
    ":zero": {"N": "0"},
    ":one": {"N": "1"},
    ":z": {"N": "-2.5"},
    ":l": {"L": [{"S": "x"}]},
    ":t": {"SS": ["old"]},
    ":b": {"B": b"\x01"},
    ":type": {"S": "N"},
}


def _used(expression: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """The placeholders the expression uses (the client refuses unused ones)."""
    return {
        k: v
        for k, v in mapping.items()
        if any(
            expression[i + len(k) : i + len(k) + 1] in ("", " ", ")", ",", ".", "[")
            for i in _find_all(expression, k)
        )
    }


def _find_all(text: str, part: str) -> list[int]:
    out, start = [], 0
    while (i := text.find(part, start)) >= 0:
        out.append(i)
        start = i + 1
    return out


def _client_values(rendered: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON values in botocore's shapes (binary as bytes)."""
    return {k: {"B": base64.b64decode(v["B"])} if "B" in v else v for k, v in rendered.items()}


CONDITIONS = [
    "attribute_not_exists(#p) OR #n <> :v",
    "pk = :v AND sk BETWEEN :zero AND :one",
    "NOT (a < :one) AND (b >= :z OR c IN (:one, :z, :v))",
    "size(#n) > :zero",
    "begins_with(#n, :v) AND contains(tags, :v) AND attribute_type(x, :type)",
    "a.b[2].c <= :one AND #s[0][1] = :b",
    "attribute_exists(#p) AND NOT attribute_exists(b)",
    "a = :one AND b = :one",  # one value used twice: one placeholder
    "size(a) <> size(b)",
]


@pytest.mark.parametrize("expression", CONDITIONS)
def test_conditions_render_to_the_same_tree(expression: str) -> None:
    names, values = _used(expression, NAMES), _used(expression, VALUES)
    compiled = client.encode_condition_expression(expression, names, values)
    renderer = Renderer()
    text = renderer.condition(compiled)
    again = client.encode_condition_expression(
        text, renderer.names, _client_values(renderer.values)
    )
    assert again == compiled, text


UPDATES = [
    "SET a.b[2] = if_not_exists(c, :z) + :one, #n = list_append(l, :l) "
    "REMOVE x ADD cnt :one DELETE tags :t",
    "SET a = :one",
    "REMOVE a, b.c[3]",
    "SET a = a - :one, b = :v",
    "ADD cnt :one",
]


@pytest.mark.parametrize("expression", UPDATES)
def test_updates_render_to_the_same_tree(expression: str) -> None:
    names, values = _used(expression, NAMES), _used(expression, VALUES)
    compiled = client.encode_update_expression(expression, names, values)
    renderer = Renderer()
    text = renderer.update(compiled)
    again = client.encode_update_expression(text, renderer.names, _client_values(renderer.values))
    assert again == compiled, text


def test_update_sections_keep_the_action_order_within_each() -> None:
    compiled = client.encode_update_expression(
        "SET a = :one REMOVE x SET b = :one", {}, {":one": {"N": "1"}}
    )
    assert Renderer().update(compiled) == "SET #n0 = :v0, #n2 = :v0 REMOVE #n1"


def test_projection_text_and_paths() -> None:
    compiled = client.encode_projection_expression("pk, a.b.c, #n[1]", {"#n": "name"}, {})
    # The protocol study's example, byte for byte.
    assert compiled.hex() == "820183821262706b84126161616261638312646e616d65d90cfc01"
    renderer = Renderer()
    paths = renderer.projection(compiled)
    assert paths == [("pk",), ("a", "b", "c"), ("name", 1)]
    assert ", ".join(map(renderer.text, paths)) == "#n0, #n1.#n2.#n3, #n4[1]"
    assert renderer.names == {"#n0": "pk", "#n1": "a", "#n2": "b", "#n3": "c", "#n4": "name"}


def test_one_renderer_shares_placeholders_across_a_request() -> None:
    condition = client.encode_condition_expression("a = :x", {}, {":x": {"S": "1"}})
    update = client.encode_update_expression("SET a = :y", {}, {":y": {"S": "2"}})
    renderer = Renderer()
    assert renderer.update(update) == "SET #n0 = :v0"
    assert renderer.condition(condition) == "#n0 = :v1"  # both values kept, apart
    assert renderer.values == {":v0": {"S": "2"}, ":v1": {"S": "1"}}


def _bytes(tree: Any, *rest: Any) -> bytes:
    return cbor.dumps([1, tree, *rest])


@pytest.mark.parametrize(
    "data",
    [
        "text",  # not bytes
        b"\xff",  # not CBOR
        cbor.dumps([2, [0, [18, "a"], [17, 0]], [1]]),  # an unknown format
        _bytes([0, [18, "a"], [17, 0]]),  # no value array
        _bytes([0, [18, "a"], [17, 1]], [1]),  # a value index past the array
        _bytes([0, [18, "a"], [17, 0]], [1, 2]),  # a value never used
        _bytes([0, [18, "a"]], []),  # a comparison with one operand
        _bytes([99, [18, "a"]], []),  # an unknown code
        _bytes([6, [18, "a"], [18, "b"]], []),  # AND of paths, not conditions
        _bytes([0, [18, 5], [18, "b"]], []),  # a path opening with an index
        _bytes([0, [18], [18, "b"]], []),  # an empty path
        _bytes([0, [18, "a", 1.5], [18, "b"]], []),  # a path element of the wrong kind
        _bytes([16, [18, "a"]], []),  # size() is no condition on its own
        _bytes([10, [18, "a"], []], []),  # IN with no choices
        _bytes([0, [18, "a"], [17, 0]], [cbor.loads(bytes.fromhex("c11a00000001"))]),
    ],
)
def test_trees_no_client_sends_are_bad_expressions(data: Any) -> None:
    with pytest.raises(BadExpression):
        Renderer().condition(data)


@pytest.mark.parametrize(
    "data",
    [
        _bytes([], []),  # no actions
        _bytes([[0, [18, "a"], [17, 0]]], [1]),  # a comparison is no action
        _bytes([[19, [18, "a"]]], []),  # SET without a value
        _bytes([[22, [18, "a"], [17, 0]]], [1]),  # REMOVE with a value
    ],
)
def test_updates_no_client_sends_are_bad_expressions(data: bytes) -> None:
    with pytest.raises(BadExpression):
        Renderer().update(data)
