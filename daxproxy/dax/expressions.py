"""DAX's compiled expressions rendered back to DynamoDB's expression text.

The DAX clients parse every expression themselves and send a CBOR tree instead of text:
``[1, tree, [value...]]`` for a condition, key condition, filter or update, ``[1, [path,
...]]`` for a projection (``CborSExprGenerator`` in the Python client). A node is
``[code, args...]`` (:class:`Func`); a path is ``[18, element...]``, an element a name
(text: ``#name`` placeholders are already replaced by the names) or tag 3324 holding a list
index; a value is ``[17, i]``, the i-th value of that expression's own value array; an
update is a flat array of actions in the order written.

:class:`Renderer` turns the trees of one request into text with fresh placeholders: every
name becomes ``#nK`` (no reserved-word clash), every value ``:vK``; their maps, merged
across the request's expressions, are :attr:`Renderer.names` and :attr:`Renderer.values`
(DynamoDB JSON values). AND, OR and NOT operands are parenthesized, so the text parses
back to the same tree. A tree no client would send (a wrong code, a wrong number of
arguments, a value index past the array, an argument of the wrong kind) raises
:class:`BadExpression`, which the caller answers with a ValidationException.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import cbor2

from daxproxy.dax import cbor, values

FORMAT = 1


class Func(enum.IntEnum):
    EQUAL = 0
    NOT_EQUAL = 1
    LESS_THAN = 2
    GREATER_EQUAL = 3
    GREATER_THAN = 4
    LESS_EQUAL = 5
    AND = 6
    OR = 7
    NOT = 8
    BETWEEN = 9
    IN = 10
    ATTRIBUTE_EXISTS = 11
    ATTRIBUTE_NOT_EXISTS = 12
    ATTRIBUTE_TYPE = 13
    BEGINS_WITH = 14
    CONTAINS = 15
    SIZE = 16
    VARIABLE = 17
    DOCUMENT_PATH = 18
    SET = 19
    ADD = 20
    DELETE = 21
    REMOVE = 22
    IF_NOT_EXISTS = 23
    LIST_APPEND = 24
    PLUS = 25
    MINUS = 26


_COMPARATORS = {
    Func.EQUAL: "=",
    Func.NOT_EQUAL: "<>",
    Func.LESS_THAN: "<",
    Func.GREATER_EQUAL: ">=",
    Func.GREATER_THAN: ">",
    Func.LESS_EQUAL: "<=",
}
# Functions by code: (name, number of arguments).
_FUNCTIONS = {
    Func.ATTRIBUTE_EXISTS: ("attribute_exists", 1),
    Func.ATTRIBUTE_NOT_EXISTS: ("attribute_not_exists", 1),
    Func.ATTRIBUTE_TYPE: ("attribute_type", 2),
    Func.BEGINS_WITH: ("begins_with", 2),
    Func.CONTAINS: ("contains", 2),
    Func.SIZE: ("size", 1),
    Func.IF_NOT_EXISTS: ("if_not_exists", 2),
    Func.LIST_APPEND: ("list_append", 2),
}
# Update actions by code: (section keyword, arguments after the path).
_ACTIONS = {
    Func.SET: ("SET", 1),
    Func.REMOVE: ("REMOVE", 0),
    Func.ADD: ("ADD", 1),
    Func.DELETE: ("DELETE", 1),
}
_ARITHMETIC = {Func.PLUS: "+", Func.MINUS: "-"}
MAX_NODES = 10_000  # DynamoDB caps an expression at 4 KB of text


class BadExpression(ValueError):
    """A compiled expression no DAX client would send."""


Path = tuple[str | int, ...]  # names, and list indexes as ints


class Renderer:
    """Renders the expressions of one request, sharing one set of placeholders."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # placeholder -> attribute name
        self.values: dict[str, dict[str, Any]] = {}  # placeholder -> DynamoDB JSON value
        self._name_of: dict[str, str] = {}  # attribute name -> placeholder
        self._args: list[Any] = []  # the value array of the expression being rendered
        self._value_of: dict[int, str] = {}  # index in that array -> placeholder
        self._nodes = 0

    def condition(self, data: Any) -> str:
        """A condition, key condition or filter expression's text."""
        return self._render(data, self._condition)

    def update(self, data: Any) -> str:
        """An update expression's text, its actions grouped by section."""

        def actions(tree: Any) -> str:
            if not isinstance(tree, list) or not tree:
                raise BadExpression("an update is a non-empty array of actions")
            sections: dict[str, list[str]] = {}
            for action in tree:
                code, args = self._node(action)
                if code not in _ACTIONS:
                    raise BadExpression(f"not an update action: {code}")
                keyword, extra = _ACTIONS[Func(code)]
                self._arity(args, 1 + extra)
                text = self.path_text(args[0])
                if extra:
                    value = self._set_value(args[1]) if code == Func.SET else self._operand(args[1])
                    text += f" = {value}" if code == Func.SET else f" {value}"
                sections.setdefault(keyword, []).append(text)
            return " ".join(f"{k} {', '.join(v)}" for k, v in sections.items())

        return self._render(data, actions)

    def projection(self, data: Any) -> list[Path]:
        """A projection expression's paths, in order (the ordinals of a projected reply);
        :meth:`text` renders the ones to send."""
        tree = _decode(data, 2)
        if not isinstance(tree, list) or not tree:
            raise BadExpression("a projection is a non-empty array of paths")
        return [self._path(node) for node in tree]

    def _render(self, data: Any, render: Any) -> str:
        decoded = _decode(data, 3)
        tree, args = decoded
        if not isinstance(args, list):
            raise BadExpression("an expression's values are an array")
        self._args, self._value_of = args, {}
        text: str = render(tree)
        unused = set(range(len(args))) - set(self._value_of)
        if unused:
            raise BadExpression("an expression holds values it does not use")
        return text

    def _node(self, node: Any) -> tuple[int, list[Any]]:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise BadExpression("an expression too large")
        if not isinstance(node, list) or not node or not _is_int(node[0]):
            raise BadExpression("a node is an array opening with its code")
        return node[0], node[1:]

    @staticmethod
    def _arity(args: Sequence[Any], count: int) -> None:
        if len(args) != count:
            raise BadExpression(f"a node with {len(args)} arguments where {count} belong")

    def _condition(self, node: Any) -> str:
        code, args = self._node(node)
        if code in _COMPARATORS:
            self._arity(args, 2)
            return f"{self._operand(args[0])} {_COMPARATORS[Func(code)]} {self._operand(args[1])}"
        if code in (Func.AND, Func.OR):
            self._arity(args, 2)
            word = "AND" if code == Func.AND else "OR"
            return f"({self._condition(args[0])}) {word} ({self._condition(args[1])})"
        if code == Func.NOT:
            self._arity(args, 1)
            return f"NOT ({self._condition(args[0])})"
        if code == Func.BETWEEN:
            self._arity(args, 3)
            low, high = self._operand(args[1]), self._operand(args[2])
            return f"{self._operand(args[0])} BETWEEN {low} AND {high}"
        if code == Func.IN:
            self._arity(args, 2)
            if not isinstance(args[1], list) or not args[1]:
                raise BadExpression("IN takes a non-empty array of operands")
            choices = ", ".join(self._operand(a) for a in args[1])
            return f"{self._operand(args[0])} IN ({choices})"
        if code in _FUNCTIONS and code not in (Func.SIZE, Func.IF_NOT_EXISTS, Func.LIST_APPEND):
            return self._function(code, args)
        raise BadExpression(f"not a condition: {code}")

    def _function(self, code: int, args: list[Any]) -> str:
        name, count = _FUNCTIONS[Func(code)]
        self._arity(args, count)
        return f"{name}({', '.join(self._operand(a) for a in args)})"

    def _operand(self, node: Any) -> str:
        code, args = self._node(node)
        if code == Func.DOCUMENT_PATH:
            return self.path_text(node)
        if code == Func.VARIABLE:
            self._arity(args, 1)
            return self._value(args[0])
        if code in _FUNCTIONS:
            return self._function(code, args)
        raise BadExpression(f"not an operand: {code}")

    def _set_value(self, node: Any) -> str:
        code, args = self._node(node)
        if code in _ARITHMETIC:
            self._arity(args, 2)
            return f"{self._operand(args[0])} {_ARITHMETIC[Func(code)]} {self._operand(args[1])}"
        return self._operand(node)

    def _value(self, index: Any) -> str:
        if not _is_int(index) or not 0 <= index < len(self._args):
            raise BadExpression("a value index outside the expression's values")
        placeholder = self._value_of.get(index)
        if placeholder is None:
            placeholder = f":v{len(self.values)}"
            try:
                self.values[placeholder] = values.from_cbor(self._args[index])
            except values.BadValue as error:
                raise BadExpression(str(error)) from None
            self._value_of[index] = placeholder
        return placeholder

    def _path(self, node: Any) -> Path:
        code, elements = self._node(node)
        if code != Func.DOCUMENT_PATH or not elements or not isinstance(elements[0], str):
            raise BadExpression("a path opens with a name")
        path: list[str | int] = []
        for element in elements:
            if isinstance(element, str):
                path.append(element)
            elif isinstance(element, cbor2.CBORTag) and element.tag == cbor.TAG_PATH_ORDINAL:
                if not _is_int(element.value) or element.value < 0:
                    raise BadExpression("a list index is a non-negative int")
                path.append(element.value)
            else:
                raise BadExpression("a path element is a name or a list index")
        return tuple(path)

    def path_text(self, node: Any) -> str:
        return self.text(self._path(node))

    def size(self, paths: list[Path]) -> int:
        """The bytes of a projection of ``paths`` as :meth:`text` would render it now (its
        placeholders ASCII), no name kept."""
        scratch = Renderer()
        scratch.names, scratch._name_of = dict(self.names), dict(self._name_of)
        return len(", ".join(scratch.text(path) for path in paths))

    def text(self, path: Path) -> str:
        """A path's text, its names by placeholder."""
        text = ""
        for element in path:
            if isinstance(element, int):
                text += f"[{element}]"
                continue
            placeholder = self._name_of.get(element)
            if placeholder is None:
                placeholder = self._name_of[element] = f"#n{len(self.names)}"
                self.names[placeholder] = element
            text += f".{placeholder}" if text else placeholder
        return text


def _decode(data: Any, length: int) -> Any:
    if not isinstance(data, bytes):
        raise BadExpression("an expression is a byte string")
    try:
        decoded = cbor.loads(data)
    except cbor.Malformed as error:
        raise BadExpression(str(error)) from None
    if not isinstance(decoded, list) or len(decoded) != length or decoded[0] != FORMAT:
        raise BadExpression(f"an expression is an array of {length} opening with {FORMAT}")
    return decoded[1] if length == 2 else decoded[1:]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
