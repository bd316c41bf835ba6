"""Projections of a cached item: ProjectionExpression and AttributesToGet, with no I/O.

The item cache holds each item whole, as DynamoDB returned it; a read's projection is
applied here, so every projection of one key shares one entry. :func:`compile_projection`
reads a GetItem request (or one table's entry of BatchGetItem) and returns a
:class:`Projection`, None when the whole item is the answer, or raises
:class:`ProjectionUnsupported` for anything DynamoDB would reject or this module does not
model: the caller then forwards the request and DynamoDB answers, error included. Being
conservative costs a cache bypass; being wrong would make the cache lie.

Semantics (Developer Guide, "Projection expressions" and "Specifying item attributes when
using expressions"): document paths of names, ``.member`` and ``[index]`` steps; the answer
keeps the nesting; a list keeps the selected elements in index order; a path that does not
exist contributes nothing; DynamoDB rejects overlapping (``a, a.b``) and conflicting
(``a.b, a[0]``) paths, unused or undefined ``#names``, and reserved words used bare.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

_MAX_EXPRESSION = 4096  # DynamoDB: an expression string is at most 4 KB
_BARE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_PLACEHOLDER = re.compile(r"#[A-Za-z0-9_]+\Z")
_STEP = re.compile(r"\s*(?:(#?[A-Za-z0-9_]+)|\[\s*([0-9]+)\s*\])\s*")


@lru_cache(maxsize=1)
def reserved_words() -> frozenset[str]:
    text = resources.files("daxproxy.core").joinpath("reserved_words.txt").read_text("utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


class ProjectionUnsupported(Exception):
    """The proxy cannot be sure of DynamoDB's answer: forward the request unchanged."""


Step = str | int  # a map member or a list index
Path = tuple[Step, ...]


@dataclass
class _Node:
    """A trie of the projected paths: a leaf takes the whole value below it."""

    leaf: bool = False
    members: dict[str, _Node] = field(default_factory=dict)
    elements: dict[int, _Node] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class Projection:
    paths: tuple[Path, ...]
    _root: _Node

    def apply(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The projected item: a new dict; the cached item is never changed."""
        out: dict[str, Any] = {}
        for name, node in self._root.members.items():
            if name in item:
                value = _project(item[name], node)
                if value is not None:
                    out[name] = value
        return out


def _project(value: Any, node: _Node) -> Any:
    if node.leaf:
        return value
    if node.members:
        members = value.get("M") if isinstance(value, dict) else None
        if not isinstance(members, dict):
            return None
        out: dict[str, Any] = {}
        for name, child in node.members.items():
            if name in members:
                projected = _project(members[name], child)
                if projected is not None:
                    out[name] = projected
        return {"M": out} if out else None
    elements = value.get("L") if isinstance(value, dict) else None
    if not isinstance(elements, list):
        return None
    selected = []
    for index in sorted(node.elements):
        if index < len(elements):
            projected = _project(elements[index], node.elements[index])
            if projected is not None:
                selected.append(projected)
    return {"L": selected} if selected else None


def compile_projection(request: Mapping[str, Any]) -> Projection | None:
    expression = request.get("ProjectionExpression")
    names = request.get("ExpressionAttributeNames")
    attributes = request.get("AttributesToGet")
    if attributes is not None:
        if expression is not None or names is not None:
            raise ProjectionUnsupported("AttributesToGet with an expression")
        if not isinstance(attributes, list) or not attributes:
            raise ProjectionUnsupported("AttributesToGet must be a non-empty list")
        if not all(isinstance(a, str) and a for a in attributes):
            raise ProjectionUnsupported("AttributesToGet holds a value that is not a name")
        if len(set(attributes)) != len(attributes):
            raise ProjectionUnsupported("AttributesToGet has duplicates")
        return _compiled(tuple((a,) for a in attributes))
    if expression is None:
        if names is not None:
            raise ProjectionUnsupported("ExpressionAttributeNames without an expression")
        return None
    if not isinstance(expression, str):
        raise ProjectionUnsupported("ProjectionExpression is not a string")
    if names is not None and (
        not isinstance(names, dict)
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in names.items())
    ):
        raise ProjectionUnsupported("ExpressionAttributeNames is not a map of names")
    return _parse(expression, tuple(sorted((names or {}).items())))


@lru_cache(maxsize=1024)
def _parse(expression: str, names: tuple[tuple[str, str], ...]) -> Projection:
    if not expression.strip() or len(expression) > _MAX_EXPRESSION:
        raise ProjectionUnsupported("the expression is empty or too long")
    defined = dict(names)
    if not all(_PLACEHOLDER.match(k) for k in defined):
        raise ProjectionUnsupported("an ExpressionAttributeNames key is not a #placeholder")
    used: set[str] = set()
    paths = tuple(_path(text, defined, used) for text in expression.split(","))
    if used != set(defined):
        raise ProjectionUnsupported("ExpressionAttributeNames holds names the expression omits")
    return _compiled(paths)


def _path(text: str, names: dict[str, str], used: set[str]) -> Path:
    steps: list[Step] = []
    position = 0
    expect_name = True
    after_index = False
    while position < len(text):
        if not expect_name and text.startswith(".", position):
            position += 1
            expect_name, after_index = True, False
            continue
        match = _STEP.match(text, position)
        if match is None or match.end() == position:
            raise ProjectionUnsupported("the expression does not parse")
        token, index = match.groups()
        if token is not None:
            if not expect_name:
                raise ProjectionUnsupported("two names without a dot between them")
            steps.append(_name(token, names, used))
            expect_name = after_index = False
        else:
            # An index follows a name; a list of lists ([i][j]) is left to DynamoDB.
            if expect_name or after_index:
                raise ProjectionUnsupported("an index that does not follow a name")
            steps.append(int(index))
            after_index = True
        position = match.end()
    if expect_name or not steps:
        raise ProjectionUnsupported("a path ends where a name was expected")
    return tuple(steps)


def _name(token: str, names: dict[str, str], used: set[str]) -> str:
    if token.startswith("#"):
        if token not in names:
            raise ProjectionUnsupported("a #placeholder is not defined")
        used.add(token)
        return names[token]
    if not _BARE_NAME.match(token) or token.upper() in reserved_words():
        raise ProjectionUnsupported("a bare name DynamoDB does not accept")
    return token


def _compiled(paths: tuple[Path, ...]) -> Projection:
    root = _Node()
    for path in paths:
        node = root
        for step in path:
            if node.leaf:
                raise ProjectionUnsupported("two document paths overlap")
            if isinstance(step, str):
                if node.elements:
                    raise ProjectionUnsupported("two document paths conflict")
                node = node.members.setdefault(step, _Node())
            else:
                if node.members:
                    raise ProjectionUnsupported("two document paths conflict")
                node = node.elements.setdefault(step, _Node())
        if node.leaf or node.members or node.elements:
            raise ProjectionUnsupported("two document paths overlap")
        node.leaf = True
    return Projection(paths, root)
