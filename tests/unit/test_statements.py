"""Which tables a PartiQL request can write, so the cache drops what it may no longer know."""

from __future__ import annotations

from typing import Any

import pytest

from daxproxy.core import partiql
from daxproxy.service.item_writes import statement_tables

EXECUTE, BATCH, TRANSACTION = "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"


@pytest.mark.parametrize(
    ("operation", "payload", "tables"),
    [
        (EXECUTE, {"Statement": 'SELECT * FROM "t" WHERE pk = ?'}, set()),
        (EXECUTE, {"Statement": "  select a FROM t"}, set()),
        (EXECUTE, {"Statement": "INSERT INTO \"users\" VALUE {'pk': 'a'}"}, {"users"}),
        (EXECUTE, {"Statement": "insert into users value {'pk': 'a'}"}, {"users"}),
        (EXECUTE, {"Statement": 'UPDATE "my.table-1" SET a = 1 WHERE pk = ?'}, {"my.table-1"}),
        (EXECUTE, {"Statement": 'DELETE FROM "t" WHERE pk = ?'}, {"t"}),
        (EXECUTE, {"Statement": 'UPDATE "we""ird" SET a = 1'}, {'we"ird'}),
        (EXECUTE, {"Statement": 'UPDATE "arn:aws:dynamodb:us-east-1:1:table/t" SET a = 1'}, {"t"}),
        (
            BATCH,
            {
                "Statements": [
                    {"Statement": 'SELECT * FROM "a"'},
                    {"Statement": 'DELETE FROM "b" WHERE pk = ?'},
                ]
            },
            {"b"},
        ),
        (
            TRANSACTION,
            {
                "TransactStatements": [
                    {"Statement": 'EXISTS(SELECT * FROM "a" WHERE pk = ?)'},
                    {"Statement": "INSERT INTO \"c\" VALUE {'pk': 'x'}"},
                ]
            },
            {"c"},
        ),
        (EXECUTE, {"Statement": "UPSERT something"}, None),
        # Which table an unquoted dotted name is written to is DynamoDB's guess, not ours.
        (EXECUTE, {"Statement": "UPDATE my.table SET a = 1"}, None),
        (EXECUTE, {"Statement": 'DELETE FROM "t" -- a comment may hide more'}, None),
        (EXECUTE, {"Statement": 'SELECT * FROM "t" -- a read stays a read'}, set()),
        (EXECUTE, {"Statement": 42}, None),
        (BATCH, {"Statements": ["not a map"]}, None),
        (BATCH, {"Statements": {"Statement": 'UPDATE "t" SET a = 1'}}, None),
        (TRANSACTION, {"TransactStatements": 'UPDATE "t" SET a = 1'}, None),
        # An operation that is not PartiQL's has no statements the cache can read.
        ("GetItem", {"Statement": 'SELECT * FROM "t"'}, None),
    ],
)
def test_statement_tables(operation: str, payload: dict[str, Any], tables: set[str] | None) -> None:
    assert statement_tables(operation, payload) == tables


WRITE = {"Statement": 'UPDATE "w" SET a = 1 WHERE pk = ?'}
DECOY = 'SELECT * FROM "r" WHERE pk = ?'


@pytest.mark.parametrize(
    ("operation", "payload", "tables"),
    [
        # Each operation's writes, beside decoy reads in the members it does not run.
        (TRANSACTION, {"Statement": DECOY, "TransactStatements": [WRITE]}, {"w"}),
        (
            TRANSACTION,
            {"Statements": [{"Statement": DECOY}], "TransactStatements": [WRITE]},
            {"w"},
        ),
        (BATCH, {"Statement": DECOY, "Statements": [WRITE]}, {"w"}),
        (BATCH, {"Statements": [WRITE], "TransactStatements": [{"Statement": DECOY}]}, {"w"}),
        (
            EXECUTE,
            {**WRITE, "Statements": [{"Statement": DECOY}], "TransactStatements": []},
            {"w"},
        ),
        # And reads beside decoy writes the operation does not run: nothing to drop.
        (
            EXECUTE,
            {"Statement": DECOY, "Statements": [WRITE], "TransactStatements": [WRITE]},
            set(),
        ),
        (TRANSACTION, {**WRITE, "TransactStatements": [{"Statement": DECOY}]}, set()),
    ],
)
def test_only_the_member_the_operation_runs_is_read(
    operation: str, payload: dict[str, Any], tables: set[str] | None
) -> None:
    assert statement_tables(operation, payload) == tables


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        (EXECUTE, {"Statements": [WRITE]}),
        (EXECUTE, {"Statement": None, "TransactStatements": [WRITE]}),
        (BATCH, {"Statement": WRITE["Statement"]}),
        (BATCH, {"Statements": None, "TransactStatements": [WRITE]}),
        (TRANSACTION, {"Statement": WRITE["Statement"], "Statements": [WRITE]}),
        (TRANSACTION, {"TransactStatements": []}),
    ],
)
def test_a_missing_member_runs_no_statements(operation: str, payload: dict[str, Any]) -> None:
    """Whatever the other members hold: the operation's own member is what the upstream runs."""
    assert partiql.statements(operation, payload) == []
