"""What a PartiQL request does, read without running it: each statement's verb and tables.

ExecuteStatement carries one ``Statement``, BatchExecuteStatement ``Statements`` and
ExecuteTransaction ``TransactStatements``, and each is read from its own member only: the
upstream runs that one, so another member beside it (an ExecuteTransaction's decoy
``"Statement": "SELECT ..."``) must not pass its writes off as a read. :func:`statements`
reads each statement's verb
(``SELECT``, with ``EXISTS`` read as one; ``INSERT``, ``UPDATE``, ``DELETE``) and the tables
it names: after each ``FROM`` of a SELECT (``FROM "Orders"."byDate"`` names the table
``Orders``, DynamoDB's ``table[.index]``), after ``INSERT INTO``, ``UPDATE`` and ``DELETE
FROM``. String literals are skipped, so a ``FROM`` inside one is data, not a keyword.

Where it cannot be sure, it says so and its callers assume the worst (the cache drops what
it knows of every table; the access check needs every action on every table): a verb it does
not know is None, and so are the tables of a statement that names none where one belongs,
has a comment (what a comment hides from this reading, DynamoDB might not), or writes to an
unquoted dotted name (``UPDATE a.b``: no index can be written, so which table it means is
DynamoDB's guess, not ours). A table named by its ARN is read as its name
(:func:`daxproxy.core.tables.table_name`). One reading serves the item cache and the access
check, so the tables one drops are the tables the other checks.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from daxproxy.core.tables import table_name

SELECT, INSERT, UPDATE, DELETE = "SELECT", "INSERT", "UPDATE", "DELETE"
_VERBS = {"SELECT": SELECT, "EXISTS": SELECT, "INSERT": INSERT, "UPDATE": UPDATE, "DELETE": DELETE}
# A string literal (skipped), a quoted identifier, a word, or any other character.
_TOKEN = re.compile(r"""\s*(?:'(?:[^']|'')*'|"((?:[^"]|"")*)"|([A-Za-z0-9_-]+)|(\S))""")
_WORD = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Statement:
    verb: str | None  # SELECT, INSERT, UPDATE or DELETE; None: not one of them
    tables: tuple[str, ...] | None  # None: not read with certainty


# The member each PartiQL operation runs its statements from.
MEMBERS = {
    "ExecuteStatement": "Statement",
    "BatchExecuteStatement": "Statements",
    "ExecuteTransaction": "TransactStatements",
}


def statements(operation: str, payload: Mapping[str, Any]) -> list[Statement] | None:
    """Each statement ``operation`` runs, in order, read from its member (:data:`MEMBERS`)
    alone; None when that member holds something that is not a statement, or ``operation``
    is not PartiQL's. A request without the member (or with an empty list) gives ``[]``."""
    member = MEMBERS.get(operation)
    if member is None:
        return None
    entries: Any
    if member == "Statement":
        entries = [payload] if payload.get(member) is not None else []
    else:
        entries = payload.get(member)
        entries = [] if entries is None else entries
    if not isinstance(entries, list):
        return None
    out: list[Statement] = []
    for entry in entries:
        text = entry.get("Statement") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            return None
        out.append(_statement(text))
    return out


def _statement(text: str) -> Statement:
    # Tokens: (quoted identifier or None, word or other character or None).
    tokens: list[tuple[str | None, str | None]] = []
    for match in _TOKEN.finditer(text):
        quoted, word, other = match.groups()
        if quoted is not None:
            tokens.append((quoted.replace('""', '"'), None))
        else:
            tokens.append((None, word if word is not None else other))
    words = [(word or "").upper() for _, word in tokens]
    verb = _VERBS.get(words[0]) if words else None
    if any("--" in word or word.startswith("/*") for word in _joined(words)):
        return Statement(verb, None)
    starts = _table_positions(verb, words)
    tables = []
    for start in starts:
        table = _identifier(tokens, start)
        if table is None:
            return Statement(verb, None)
        dotted = tokens[start][0] is None and words[start + 1 : start + 2] == ["."]
        if verb != SELECT and dotted:
            return Statement(verb, None)
        tables.append(table_name(table))
    return Statement(verb, tuple(tables) if tables else None)


def _joined(words: list[str]) -> Iterator[str]:
    """Each word, and each pair of adjacent one-character tokens ("/" then "*")."""
    yield from words
    yield from (a + b for a, b in itertools.pairwise(words))


def _table_positions(verb: str | None, words: list[str]) -> list[int]:
    if verb == SELECT:
        return [i + 1 for i, word in enumerate(words) if word == "FROM"]
    if verb == INSERT:
        return [2] if words[1:2] == ["INTO"] else []
    if verb == DELETE:
        return [2] if words[1:2] == ["FROM"] else []
    return [1] if verb == UPDATE else []


def _identifier(tokens: list[tuple[str | None, str | None]], index: int) -> str | None:
    if index >= len(tokens):
        return None
    quoted, word = tokens[index]
    if quoted is not None:
        return quoted or None
    if word is not None and _WORD.fullmatch(word):
        return word
    return None
