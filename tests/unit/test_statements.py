"""Which tables a PartiQL request can write, so the cache drops what it may no longer know."""

from __future__ import annotations

from typing import Any

import pytest

from daxproxy.service.item_writes import statement_tables


@pytest.mark.parametrize(
    ("payload", "tables"),
    [
        ({"Statement": 'SELECT * FROM "t" WHERE pk = ?'}, set()),
        ({"Statement": "  select a FROM t"}, set()),
        ({"Statement": "INSERT INTO \"users\" VALUE {'pk': 'a'}"}, {"users"}),
        ({"Statement": "insert into users value {'pk': 'a'}"}, {"users"}),
        ({"Statement": 'UPDATE "my.table-1" SET a = 1 WHERE pk = ?'}, {"my.table-1"}),
        ({"Statement": 'DELETE FROM "t" WHERE pk = ?'}, {"t"}),
        ({"Statement": 'UPDATE "we""ird" SET a = 1'}, {'we"ird'}),
        (
            {
                "Statements": [
                    {"Statement": 'SELECT * FROM "a"'},
                    {"Statement": 'DELETE FROM "b" WHERE pk = ?'},
                ]
            },
            {"b"},
        ),
        (
            {
                "TransactStatements": [
                    {"Statement": 'EXISTS(SELECT * FROM "a" WHERE pk = ?)'},
                    {"Statement": "INSERT INTO \"c\" VALUE {'pk': 'x'}"},
                ]
            },
            {"c"},
        ),
        ({"Statement": "UPSERT something"}, None),
        # Which table an unquoted dotted name is written to is DynamoDB's guess, not ours.
        ({"Statement": "UPDATE my.table SET a = 1"}, None),
        ({"Statement": 'DELETE FROM "t" -- a comment may hide more'}, None),
        ({"Statement": 'SELECT * FROM "t" -- a read stays a read'}, set()),
        ({"Statement": 42}, None),
        ({"Statements": ["not a map"]}, None),
    ],
)
def test_statement_tables(payload: dict[str, Any], tables: set[str] | None) -> None:
    assert statement_tables(payload) == tables
