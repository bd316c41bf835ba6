"""Projections of a cached item: what DynamoDB answers, and what the proxy leaves to DynamoDB.

The expected answers follow the Developer Guide ("Projection expressions", "Specifying item
attributes when using expressions") and the test suites that dynalite and ScyllaDB's
Alternator run against DynamoDB itself (list elements in index order, missing paths
contributing nothing, overlap and conflict rules, key attributes that may not be stepped
into). tests/integration/test_projection_vs_moto.py compares the same answers with moto's.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pytest

from daxproxy.core import projection as module
from daxproxy.core.projection import Projection, ProjectionUnsupported, compile_projection

KEY = {"pk": {"S": "p"}}

ITEM: dict[str, Any] = {
    "pk": {"S": "p"},
    "s": {"S": "text"},
    "n": {"N": "1"},
    "b": {"B": "AQI="},
    "ss": {"SS": ["x", "y"]},
    "yes": {"BOOL": True},
    "nul": {"NULL": True},
    "Attr2": {"S": "capital"},
    "e": {"M": {}},
    "el": {"L": []},
    "m": {
        "M": {
            "a": {"S": "A"},
            "b": {"M": {"c": {"N": "3"}, "d": {"L": [{"S": "d0"}, {"S": "d1"}]}}},
            "e": {"M": {}},
            "dash-name": {"S": "dashed"},
        }
    },
    "l": {
        "L": [
            {"S": "l0"},
            {"M": {"x": {"N": "10"}, "y": {"N": "11"}}},
            {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}]},
            {"S": "l3"},
        ]
    },
    "odd name": {"S": "spaced"},
    "a.b": {"S": "one attribute with a dot"},
    "a": {"M": {"b": {"S": "member b of map a"}}},
    "size": {"S": "a reserved word"},
}

# A chain of 31 maps under "deep": "deep" + 31 ".k" steps is a path of 32 levels.
DEEP: dict[str, Any] = {"S": "bottom"}
for _ in range(31):
    DEEP = {"M": {"k": DEEP}}
ITEM["deep"] = DEEP

L = ITEM["l"]["L"]
M = ITEM["m"]["M"]


def compiled(request: dict[str, Any]) -> Projection:
    projection = compile_projection({"Key": KEY, **request})
    assert projection is not None
    return projection


def expression(text: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"ProjectionExpression": text}
    if names is not None:
        request["ExpressionAttributeNames"] = names
    return request


# (ProjectionExpression, ExpressionAttributeNames, the projected item)
APPLIED: list[tuple[str, dict[str, str] | None, dict[str, Any]]] = [
    ("s", None, {"s": ITEM["s"]}),
    ("s, n", None, {"s": ITEM["s"], "n": ITEM["n"]}),
    ("  s ,n  ", None, {"s": ITEM["s"], "n": ITEM["n"]}),
    ("s\t,\r\nn", None, {"s": ITEM["s"], "n": ITEM["n"]}),
    ("b, ss, yes, nul", None, {k: ITEM[k] for k in ("b", "ss", "yes", "nul")}),
    ("Attr2", None, {"Attr2": ITEM["Attr2"]}),
    ("absent", None, {}),
    ("s, absent", None, {"s": ITEM["s"]}),
    ("e, el", None, {"e": {"M": {}}, "el": {"L": []}}),
    ("m", None, {"m": ITEM["m"]}),
    ("m.a", None, {"m": {"M": {"a": M["a"]}}}),
    ("m.e", None, {"m": {"M": {"e": {"M": {}}}}}),
    ("m.b.c", None, {"m": {"M": {"b": {"M": {"c": {"N": "3"}}}}}}),
    ("m.a, m.b.c", None, {"m": {"M": {"a": M["a"], "b": {"M": {"c": {"N": "3"}}}}}}),
    ("m.b.d[1]", None, {"m": {"M": {"b": {"M": {"d": {"L": [{"S": "d1"}]}}}}}}),
    ("m . b . c", None, {"m": {"M": {"b": {"M": {"c": {"N": "3"}}}}}}),
    ("m.zz", None, {}),
    ("m.a.zz", None, {}),
    ("m[0]", None, {}),
    ("s.x", None, {}),
    ("s[0]", None, {}),
    ("ss[0]", None, {}),
    ("l[0]", None, {"l": {"L": [L[0]]}}),
    ("l[2]", None, {"l": {"L": [L[2]]}}),
    ("l[9]", None, {}),
    ("l[3], l[1]", None, {"l": {"L": [L[1], L[3]]}}),
    ("l[1].x", None, {"l": {"L": [{"M": {"x": {"N": "10"}}}]}}),
    ("l[1].y, l[1].x", None, {"l": {"L": [L[1]]}}),
    ("l[1].zz, l[3]", None, {"l": {"L": [L[3]]}}),
    ("l[0].zz, l[9], l[1].zz", None, {}),
    ("l[2][1]", None, {"l": {"L": [{"L": [{"N": "1"}]}]}}),
    ("l[2][2], l[2][0]", None, {"l": {"L": [{"L": [{"N": "0"}, {"N": "2"}]}]}}),
    ("l[2][9]", None, {}),
    ("l[0][0]", None, {}),
    ("l [ 1 ] . x", None, {"l": {"L": [{"M": {"x": {"N": "10"}}}]}}),
    ("a.b", None, {"a": ITEM["a"]}),
    ("#ab", {"#ab": "a.b"}, {"a.b": ITEM["a.b"]}),
    ("#o", {"#o": "odd name"}, {"odd name": ITEM["odd name"]}),
    ("#size", {"#size": "size"}, {"size": ITEM["size"]}),
    ("m.#d", {"#d": "dash-name"}, {"m": {"M": {"dash-name": M["dash-name"]}}}),
    ("#m.#a, #s", {"#m": "m", "#a": "a", "#s": "s"}, {"m": {"M": {"a": M["a"]}}, "s": ITEM["s"]}),
    ("#l[1].#x", {"#l": "l", "#x": "x"}, {"l": {"L": [{"M": {"x": {"N": "10"}}}]}}),
    ("#_1", {"#_1": "s"}, {"s": ITEM["s"]}),
    ("deep" + ".k" * 31, None, {"deep": DEEP}),
]


@pytest.mark.parametrize(("text", "names", "expected"), APPLIED)
def test_projection_expressions(
    text: str, names: dict[str, str] | None, expected: dict[str, Any]
) -> None:
    assert compiled(expression(text, names)).apply(ITEM) == expected


# AttributesToGet: top-level names taken literally, reserved words and dots included.
ATTRIBUTES_TO_GET: list[tuple[list[str], dict[str, Any]]] = [
    (["s"], {"s": ITEM["s"]}),
    (["s", "absent", "m"], {"s": ITEM["s"], "m": ITEM["m"]}),
    (["a.b"], {"a.b": ITEM["a.b"]}),
    (["size", "odd name"], {"size": ITEM["size"], "odd name": ITEM["odd name"]}),
    (["absent"], {}),
]


@pytest.mark.parametrize(("attributes", "expected"), ATTRIBUTES_TO_GET)
def test_attributes_to_get(attributes: list[str], expected: dict[str, Any]) -> None:
    assert compiled({"AttributesToGet": attributes}).apply(ITEM) == expected


def _names(**names: str) -> dict[str, str]:
    return {f"#{key}": value for key, value in names.items()}


# Requests DynamoDB rejects, or whose answer the module does not model: (request, why).
REJECTED: list[tuple[dict[str, Any], str]] = [
    # Syntax ("Invalid ProjectionExpression: Syntax error; token: ...").
    (expression(""), "empty"),
    (expression(" \t "), "blank"),
    (expression("a,"), "trailing comma"),
    (expression(",a"), "leading comma"),
    (expression("a,,b"), "empty path"),
    (expression("a..b"), "double dot"),
    (expression("a."), "dangling dot"),
    (expression(".a"), "leading dot"),
    (expression("[0]"), "index without a name"),
    (expression("a.[0]"), "index after a dot"),
    (expression("a[x]"), "index that is a name"),
    (expression("a[]"), "empty index"),
    (expression("a[-1]"), "negative index (Developer Guide: invalid)"),
    (expression("a[0.4]"), "fractional index (Developer Guide: invalid)"),
    (expression("a[0"), "unclosed index"),
    (expression("a]"), "stray bracket"),
    (expression("a b"), "two names"),
    (expression("a.b c"), "two names in a path"),
    (expression("a-b"), "a dash needs a placeholder"),
    (expression("1a"), "a leading digit needs a placeholder"),
    (expression("_a"), "a leading underscore needs a placeholder"),
    (expression("a_b"), "an underscore second needs a placeholder (Developer Guide rule)"),
    (expression("caf\u00e9"), "a name outside ASCII"),
    (expression("(a)"), "parentheses"),
    (expression("f(a)"), "a function"),
    (expression(":a"), "a value placeholder"),
    (expression("a#b"), "a placeholder glued to a name"),
    # Indexes DynamoDB's answer to is not documented.
    (expression("a[01]"), "leading zero"),
    (expression("a[1000000]"), "an index no item reaches"),
    # Reserved words, in any case and at any depth.
    (expression("size"), "reserved"),
    (expression("Name"), "reserved, mixed case"),
    (expression("m.status"), "reserved, nested"),
    (expression("a, ABSoLUTE"), "reserved, second path"),
    # Placeholders.
    (expression("#a"), "undefined placeholder"),
    (expression("#"), "a bare pound sign"),
    (expression("a", _names(b="b")), "unused placeholder"),
    (expression("#a", _names(a="a", b="b")), "one unused placeholder"),
    (expression("a", {}), "empty ExpressionAttributeNames"),
    (expression("#a", {"#a": "a", "a": "a"}), "a key without #"),
    (expression("#a-b", {"#a-b": "a"}), "a key with a dash"),
    (expression("#" + "a" * 255, {"#" + "a" * 255: "a"}), "a key longer than 255 bytes"),
    (expression("#a", {"#a": ""}), "an empty name"),
    (expression("#a", {"#a": "x" * 65536}), "a name longer than 65535 bytes"),
    ({"ProjectionExpression": "#a", "ExpressionAttributeNames": {"#a": 5}}, "name not a string"),
    ({"ExpressionAttributeNames": {"#a": "a"}}, "names without an expression"),
    # Overlapping paths.
    (expression("a, a"), "duplicate"),
    (expression("a.b, a.b"), "duplicate nested"),
    (expression("a[1], a[1]"), "duplicate element"),
    (expression("a, a.b"), "overlap"),
    (expression("a.b, a"), "overlap, the other way"),
    (expression("a, a.b[2].c"), "overlap, deep"),
    (expression("a[0], a[0].b"), "overlap in a list"),
    (expression("a.b.d.e, a.b"), "overlap, long"),
    (expression("#x, a", _names(x="a")), "overlap through a placeholder"),
    (expression("#x, #y", _names(x="a", y="a")), "two placeholders for one name"),
    # Conflicting paths.
    (expression("a.b, a[0]"), "conflict"),
    (expression("a[1], a.b"), "conflict, the other way"),
    (expression("a.b[1], a.b.c"), "conflict, nested"),
    (expression("a[3].b, #a.#b.b", _names(a="a", b="[3]")), "a name like an index"),
    # Limits.
    (expression("deep" + ".k" * 32), "33 nesting levels"),
    (expression(", ".join(f"a{i:04}" for i in range(700))), "longer than 4 KB"),
    # Key attributes may not be stepped into.
    (expression("pk.x"), "a member of the partition key"),
    (expression("pk[0]"), "an element of the partition key"),
    (expression("s, #k.x", _names(k="pk")), "the key through a placeholder"),
    # Types: DynamoDB's SerializationException, or a null the module does not read.
    ({"ProjectionExpression": 5}, "expression not a string"),
    ({"ProjectionExpression": None}, "expression null"),
    ({"ProjectionExpression": "#a", "ExpressionAttributeNames": ["#a"]}, "names not a map"),
    ({"ProjectionExpression": "a", "ExpressionAttributeNames": None}, "names null"),
    # AttributesToGet.
    ({"AttributesToGet": []}, "empty list"),
    ({"AttributesToGet": ["a", "a"]}, "duplicates"),
    ({"AttributesToGet": [""]}, "an empty name"),
    ({"AttributesToGet": [5]}, "not a name"),
    ({"AttributesToGet": "a"}, "not a list"),
    ({"AttributesToGet": None}, "null"),
    ({"AttributesToGet": [f"a{i}" for i in range(256)]}, "more than 255 names"),
    ({"AttributesToGet": ["x" * 65536]}, "a name longer than 65535 bytes"),
    ({"AttributesToGet": ["a"], "ProjectionExpression": "a"}, "both forms"),
    ({"AttributesToGet": ["a"], "ExpressionAttributeNames": {"#a": "a"}}, "names with it"),
]


@pytest.mark.parametrize(("request_", "why"), REJECTED, ids=[why for _, why in REJECTED])
def test_what_dynamodb_rejects_is_left_to_dynamodb(request_: dict[str, Any], why: str) -> None:
    with pytest.raises(ProjectionUnsupported):
        compile_projection({"Key": KEY, **request_})


@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"TableName": "t", "Key": KEY, "ConsistentRead": False},
        {"Keys": [KEY], "ConsistentRead": True},
    ],
)
def test_no_projection_means_the_whole_item(request_: dict[str, Any]) -> None:
    assert compile_projection(request_) is None


@pytest.mark.parametrize(
    ("request_", "accepted"),
    [
        (expression("deep" + ".k" * 31), "32 nesting levels"),
        (expression("a" * 4000), "a 4000-byte expression"),
        (expression("#" + "a" * 254, {"#" + "a" * 254: "a"}), "a 255-byte placeholder"),
        (expression("#a", {"#a": "x" * 65535}), "a 65535-byte name"),
        ({"AttributesToGet": [f"a{i}" for i in range(255)]}, "255 names"),
        ({"AttributesToGet": ["x" * 65535]}, "a 65535-byte name"),
        (expression("a[999999]"), "the largest index"),
        (expression("a.b, a.c[2], a.d.e, a.d.f"), "shared prefixes"),
        (expression("a[1], a[2]"), "two elements"),
    ],
)
def test_the_limits_are_inclusive(request_: dict[str, Any], accepted: str) -> None:
    assert compiled(request_).paths


def test_paths_resolve_placeholders_and_dereferenced_names_the_stepped_into() -> None:
    projection = compiled(expression("#m.a, l[2][0], s", _names(m="m")))
    assert projection.paths == (("m", "a"), ("l", 2, 0), ("s",))
    assert projection.dereferenced == frozenset({"m", "l"})
    assert compiled({"AttributesToGet": ["a.b", "s"]}).paths == (("a.b",), ("s",))


def test_batch_get_entries_check_every_key() -> None:
    # A BatchGetItem table entry names its key attributes in "Keys", not "Key".
    keys = [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}]
    entry = {"Keys": keys, "ProjectionExpression": "m.a"}
    assert compile_projection(entry) is not None
    with pytest.raises(ProjectionUnsupported):
        compile_projection({**entry, "ProjectionExpression": "pk.a"})
    with pytest.raises(ProjectionUnsupported):  # the key is unknown: it may be "m"
        compile_projection({"ProjectionExpression": "m.a"})
    assert compile_projection({"ProjectionExpression": "m"}) is not None  # no step: no key


def test_the_cached_item_is_never_changed() -> None:
    before = copy.deepcopy(ITEM)
    for text, names, _ in APPLIED:
        compiled(expression(text, names)).apply(ITEM)
    assert before == ITEM


def test_an_answer_is_a_new_dict_each_time() -> None:
    projection = compiled(expression("s, l[1].x"))
    first, second = projection.apply(ITEM), projection.apply(ITEM)
    assert first == second
    assert first is not second
    assert first["l"] is not second["l"]


def test_compiled_projections_are_memoized() -> None:
    names = {"#a": "a", "#b": "b"}
    first = compiled(expression("#a, #b", names))
    reordered = compiled(expression("#a, #b", dict(reversed(names.items()))))
    assert reordered is first


def test_rejections_are_memoized_too() -> None:
    request = {"Key": KEY, "ProjectionExpression": "a, a.b, only_in_this_test"}
    before = module._compiled.cache_info()
    for _ in range(2):
        with pytest.raises(ProjectionUnsupported, match="overlap"):
            compile_projection(request)
    after = module._compiled.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)


def test_large_projections_are_compiled_but_not_memoized() -> None:
    long_name = "n" * 20000
    request = expression("#a", {"#a": long_name})
    before = module._compiled.cache_info().currsize
    assert compiled(request).apply({long_name: {"S": "v"}}) == {long_name: {"S": "v"}}
    assert module._compiled.cache_info().currsize == before


def test_reserved_words_are_dynamodbs_list() -> None:
    words = module.reserved_words()
    assert len(words) == 573
    assert {"SIZE", "NAME", "STATUS", "DATA", "KEY", "TTL", "COMMENT"} <= words
    assert "PK" not in words
    assert all(word == word.upper() for word in words)


def test_reserved_words_match_the_list_moto_ships() -> None:
    # moto copies the same page of the Developer Guide ("Reserved words in DynamoDB").
    motos = resources.files("moto.dynamodb.parsing").joinpath("reserved_keywords.txt")
    assert module.reserved_words() == frozenset(motos.read_text("utf-8").split())
