"""Projections of a cached item: ProjectionExpression and AttributesToGet, with no I/O.

The item cache holds each item whole, in DynamoDB JSON as DynamoDB returned it, so that every
projection of one key shares one entry. :func:`compile_projection` reads a GetItem request
(or one table's entry of BatchGetItem's ``RequestItems``) and returns a :class:`Projection`,
None when the request has no projection (the whole item is the answer), or raises
:class:`ProjectionUnsupported` for anything DynamoDB would reject and anything this module
does not model; the caller then forwards the request unchanged and DynamoDB answers, its own
ValidationException included. Being conservative costs a cache bypass; being wrong would make
the cache lie. :meth:`Projection.apply` builds the answer from a cached item.

Semantics (Developer Guide: "Projection expressions", "Specifying item attributes when using
expressions", "Expression attribute names", "Reserved words in DynamoDB"):

- A path is a name followed by ``.name`` and ``[index]`` steps; paths are comma-separated.
  Bare names start with a letter; ``#placeholders`` stand for any name, dots included.
- The answer keeps the nesting: ``a.b`` gives ``{"a": {"M": {"b": ...}}}``; the selected
  elements of one list come once each, in index order, each with all its selected members;
  a path that does not exist in the item (missing name, index out of range, a step into
  something that is not a map or a list) contributes nothing.
- DynamoDB rejects overlapping (``a, a.b``; ``a, a``) and conflicting (``a.b, a[0]``) paths,
  undefined or unused placeholders, reserved words used bare, and a ``.``/``[]`` step into a
  key attribute of the table (checked here against the request's ``Key``/``Keys``) or of one
  of its indexes (the caller's to check with :attr:`Projection.dereferenced`).

Compiled projections are memoized, rejections included: the same projection arrives with
every request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

# Limits: Developer Guide, "Service, account, and table quotas", "Expression parameters" and
# "Nested attribute depth". Where "KB" or "MB" may mean 1000 or 1024 we take the smaller.
_MAX_EXPRESSION_BYTES = 4000  # "The maximum length of any expression string is 4 KB"
_MAX_PLACEHOLDER_BYTES = 255  # "... any single expression attribute name ... is 255 bytes"
_MAX_NAMES_BYTES = 2_000_000  # "all substitution variables in an expression is 2 MB"
_MAX_ATTRIBUTE_NAME_BYTES = 65535  # "64 KB"; Alternator's test_limits.py: 65535 is the last
_MAX_DEPTH = 32  # "The maximum depth for a document path is 32"
_MAX_ATTRIBUTES_TO_GET = 255  # as dynalite (which copies DynamoDB's validation) checks it
_MEMO_CHARS = 16384  # larger projections are compiled afresh, so the memo stays small

# A token (a word, a placeholder, or one of . , [ ]) and the blanks after it. DynamoDB's
# whitespace set is not documented; these four are the ones dynalite's grammar skips.
_BLANKS = " \t\r\n"
_TOKEN = re.compile(r"([A-Za-z0-9_]+|#[A-Za-z0-9_]*|[.,\[\]])[ \t\r\n]*")
# A bare name: "the first character is a-z or A-Z and the second character (if present) is
# a-z, A-Z, or 0-9" ("Projection expressions"); later characters may be "_" too. DynamoDB
# answers "Syntax error; token: "_"" for a leading underscore.
_BARE_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9][A-Za-z0-9_]*)?")
_PLACEHOLDER = re.compile(r"#[A-Za-z0-9_]+")  # "ExpressionAttributeNames contains invalid key"
# An index: "a non-negative integer". A leading zero, or an index no 400 KB item can reach,
# is left to DynamoDB, whose answer to them is not documented.
_INDEX = re.compile(r"0|[1-9][0-9]{0,5}")

_T = TypeVar("_T")
Step = str | int  # a map member or a list index
Path = tuple[Step, ...]


class ProjectionUnsupported(Exception):
    """The proxy cannot be sure what DynamoDB answers for this projection: the caller forwards
    the request unchanged (DynamoDB then gives its own answer or its own ValidationException).
    """


@lru_cache(maxsize=1)
def reserved_words() -> frozenset[str]:
    """DynamoDB's reserved words, upper case (``reserved_words.txt`` beside this module)."""
    text = resources.files("daxproxy.core").joinpath("reserved_words.txt").read_text("utf-8")
    return frozenset(w for w in map(str.strip, text.splitlines()) if w and w[0] != "#")


@dataclass(frozen=True, slots=True)
class _Node:
    """What a path selects below one value: map members or list elements (never both; a
    conflict is rejected). A child of None takes the whole value there."""

    members: tuple[tuple[str, _Node | None], ...] = ()
    elements: tuple[tuple[int, _Node | None], ...] = ()  # in index order


@dataclass(frozen=True, slots=True)
class Projection:
    """A compiled projection. ``paths`` are the document paths as written, placeholders
    resolved; ``dereferenced`` holds the top-level names that some path steps into with
    ``.`` or ``[]``. DynamoDB rejects a step into a key attribute: :func:`compile_projection`
    checks the table's key, the caller must check the key attributes of the table's indexes."""

    paths: tuple[Path, ...]
    dereferenced: frozenset[str]
    tree: _Node

    def apply(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The projected item: a new dict, possibly empty. The cached item is never changed;
        the answer shares the selected values with it, so treat both as read-only."""
        return _pick_members(item, self.tree.members)


def _pick_members(
    source: Mapping[str, Any], members: tuple[tuple[str, _Node | None], ...]
) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for name, node in members:
        value = source.get(name)
        if value is not None and node is not None:
            value = _descend(value, node)
        if value is not None:
            picked[name] = value
    return picked


def _descend(value: Any, node: _Node) -> dict[str, Any] | None:
    """The selected part of one attribute value, or None when nothing selected exists."""
    if not isinstance(value, dict):
        return None
    if node.members:
        inner = value.get("M")
        if not isinstance(inner, dict):
            return None
        members = _pick_members(inner, node.members)
        return {"M": members} if members else None
    elements = value.get("L")
    if not isinstance(elements, list):
        return None
    selected = []
    for index, child in node.elements:
        if index >= len(elements):
            break
        element = elements[index] if child is None else _descend(elements[index], child)
        if element is not None:
            selected.append(element)
    return {"L": selected} if selected else None


# Reading the request: each check says what DynamoDB would answer, or what is not modelled.


def compile_projection(request: Mapping[str, Any]) -> Projection | None:
    """From a GetItem request (or one table's entry of BatchGetItem's RequestItems): reads
    ProjectionExpression, ExpressionAttributeNames and AttributesToGet, and ``Key``/``Keys``
    when a path steps into an attribute. None when the request has no projection (the full
    item is the answer). Raises ProjectionUnsupported for anything DynamoDB would reject or
    that the module does not model."""
    expression = _member(request, "ProjectionExpression", str)
    names = _member(request, "ExpressionAttributeNames", dict)
    attributes = _member(request, "AttributesToGet", list)
    if attributes is not None:
        if expression is not None or names is not None:
            raise ProjectionUnsupported("AttributesToGet with an expression parameter")
        return _memoized(None, (), _attribute_names(attributes))
    if expression is None:
        if names is not None:
            raise ProjectionUnsupported("ExpressionAttributeNames without an expression")
        return None
    projection = _memoized(expression, _placeholders(names), None)
    if projection.dereferenced:
        _check_keys_are_not_dereferenced(projection, request)
    return projection


def _member(request: Mapping[str, Any], name: str, kind: type[_T]) -> _T | None:
    if name not in request:
        return None
    value = request[name]
    if not isinstance(value, kind):  # null included: leave DynamoDB to read it
        raise ProjectionUnsupported(f"{name} is not a {kind.__name__}")
    return value


def _attribute_names(attributes: list[Any]) -> tuple[str, ...]:
    if not 1 <= len(attributes) <= _MAX_ATTRIBUTES_TO_GET:
        raise ProjectionUnsupported("AttributesToGet must hold 1 to 255 names")
    if not all(isinstance(a, str) and _is_attribute_name(a) for a in attributes):
        raise ProjectionUnsupported("AttributesToGet holds something that is not a name")
    if len(set(attributes)) != len(attributes):
        raise ProjectionUnsupported("Duplicate value in attribute name")
    return tuple(attributes)


def _placeholders(names: dict[Any, Any] | None) -> tuple[tuple[str, str], ...]:
    if names is None:
        return ()
    if not names:
        raise ProjectionUnsupported("ExpressionAttributeNames must not be empty")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise ProjectionUnsupported("ExpressionAttributeNames is not a map of strings")
    return tuple(sorted(names.items()))


def _is_attribute_name(name: str) -> bool:
    return 0 < len(name.encode("utf-8", "surrogatepass")) <= _MAX_ATTRIBUTE_NAME_BYTES


def _check_keys_are_not_dereferenced(projection: Projection, request: Mapping[str, Any]) -> None:
    """DynamoDB: "Key attributes must be scalars; list random access '[]' and map lookup '.'
    are not allowed" (observed, pinned by dynalite's getItem tests)."""
    key = request.get("Key")
    keys = [key] if isinstance(key, dict) else request.get("Keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ProjectionUnsupported("a path steps into an attribute and the key is unknown")
    if any(not projection.dereferenced.isdisjoint(k) for k in keys):
        raise ProjectionUnsupported("a path steps into a key attribute")


# Compiling: memoize, tokenize, parse, check the placeholders, build the tree.


def _memoized(
    expression: str | None,
    names: tuple[tuple[str, str], ...],
    attributes: tuple[str, ...] | None,
) -> Projection:
    size = len(expression or "") + sum(len(k) + len(v) for k, v in names)
    size += sum(map(len, attributes or ()))
    compile_ = _compiled if size <= _MEMO_CHARS else _compiled.__wrapped__
    result = compile_(expression, names, attributes)
    if isinstance(result, str):
        raise ProjectionUnsupported(result)
    return result


@lru_cache(maxsize=1024)
def _compiled(
    expression: str | None,
    names: tuple[tuple[str, str], ...],
    attributes: tuple[str, ...] | None,
) -> Projection | str:
    """The projection, or why it is unsupported (a string, so that the memo holds no
    exception with its traceback)."""
    try:
        if attributes is not None:
            return _build(tuple((name,) for name in attributes))
        assert expression is not None
        return _build(_parse_expression(expression, dict(names)))
    except ProjectionUnsupported as exc:
        return str(exc)


def _parse_expression(expression: str, names: dict[str, str]) -> tuple[Path, ...]:
    if len(expression.encode("utf-8", "surrogatepass")) > _MAX_EXPRESSION_BYTES:
        raise ProjectionUnsupported("the expression is longer than DynamoDB takes")
    _check_placeholders(names)
    parser = _Parser(_tokenize(expression), names)
    paths = parser.paths()
    if parser.used != names.keys():
        raise ProjectionUnsupported("Value provided in ExpressionAttributeNames unused")
    return paths


def _check_placeholders(names: dict[str, str]) -> None:
    total = 0
    for key, name in names.items():
        if not _PLACEHOLDER.fullmatch(key) or len(key) > _MAX_PLACEHOLDER_BYTES:
            raise ProjectionUnsupported("ExpressionAttributeNames contains invalid key")
        if not _is_attribute_name(name):
            raise ProjectionUnsupported("ExpressionAttributeNames contains invalid value")
        total += len(key) + len(name.encode("utf-8", "surrogatepass"))
    if total > _MAX_NAMES_BYTES:
        raise ProjectionUnsupported("ExpressionAttributeNames is larger than DynamoDB takes")


def _tokenize(expression: str) -> list[str]:
    text = expression.strip(_BLANKS)
    if not text:
        raise ProjectionUnsupported("The expression can not be empty")
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ProjectionUnsupported(f"Syntax error near {text[position : position + 20]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent: paths := path ("," path)*; path := name ("." name | "[" index "]")*;
    name := bare | #placeholder. Records the placeholders it resolves in ``used``."""

    def __init__(self, tokens: list[str], names: dict[str, str]) -> None:
        self._tokens = tokens
        self._at = 0
        self._names = names
        self.used: set[str] = set()

    def paths(self) -> tuple[Path, ...]:
        paths = [self._path()]
        while self._take(","):
            paths.append(self._path())
        if self._at != len(self._tokens):
            raise ProjectionUnsupported(f"Syntax error; token: {self._tokens[self._at]!r}")
        return tuple(paths)

    def _path(self) -> Path:
        steps: list[Step] = [self._name()]
        while True:
            if self._take("."):
                steps.append(self._name())
            elif self._take("["):
                steps.append(self._index())
                if not self._take("]"):
                    raise ProjectionUnsupported("Syntax error: an index without its ']'")
            else:
                return tuple(steps)

    def _take(self, punctuation: str) -> bool:
        if self._at < len(self._tokens) and self._tokens[self._at] == punctuation:
            self._at += 1
            return True
        return False

    def _next(self) -> str:
        if self._at == len(self._tokens):
            raise ProjectionUnsupported("Syntax error: the expression ends early")
        self._at += 1
        return self._tokens[self._at - 1]

    def _name(self) -> str:
        token = self._next()
        if token.startswith("#"):
            if token not in self._names:
                raise ProjectionUnsupported(f"An expression attribute name is not defined: {token}")
            self.used.add(token)
            return self._names[token]
        if not _BARE_NAME.fullmatch(token):
            raise ProjectionUnsupported(f"a bare name that needs a #placeholder: {token!r}")
        if token.upper() in reserved_words():
            raise ProjectionUnsupported(f"Attribute name is a reserved keyword: {token}")
        return token

    def _index(self) -> int:
        token = self._next()
        if not _INDEX.fullmatch(token):
            raise ProjectionUnsupported(f"a list index DynamoDB may not take: {token!r}")
        return int(token)


@dataclass
class _Branch:
    """The mutable tree :func:`_build` grows, one path at a time."""

    leaf: bool = False
    members: dict[str, _Branch] = field(default_factory=dict)
    elements: dict[int, _Branch] = field(default_factory=dict)

    def child(self, step: Step) -> _Branch:
        if self.leaf:
            raise ProjectionUnsupported("Two document paths overlap with each other")
        if isinstance(step, str):
            if self.elements:
                raise ProjectionUnsupported("Two document paths conflict with each other")
            return self.members.setdefault(step, _Branch())
        if self.members:
            raise ProjectionUnsupported("Two document paths conflict with each other")
        return self.elements.setdefault(step, _Branch())

    def frozen(self) -> _Node | None:
        if self.leaf:
            return None
        return _Node(
            tuple((name, b.frozen()) for name, b in self.members.items()),
            tuple((index, b.frozen()) for index, b in sorted(self.elements.items())),
        )


def _build(paths: tuple[Path, ...]) -> Projection:
    root = _Branch()
    for path in paths:
        if len(path) > _MAX_DEPTH:
            raise ProjectionUnsupported("The document path has too many nesting levels")
        branch = root
        for step in path:
            branch = branch.child(step)
        if branch.leaf or branch.members or branch.elements:
            raise ProjectionUnsupported("Two document paths overlap with each other")
        branch.leaf = True
    tree = root.frozen()
    assert tree is not None
    dereferenced = frozenset(str(path[0]) for path in paths if len(path) > 1)
    return Projection(paths, dereferenced, tree)
