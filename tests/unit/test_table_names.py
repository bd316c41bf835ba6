"""The table a name or an ARN names (daxproxy.core.tables), and that every reader of table
names (access check, item and query caches, metrics) reads them alike."""

from __future__ import annotations

import pytest

from daxproxy.core import access
from daxproxy.core.operations import Kind, Operation
from daxproxy.core.query_requests import table_of
from daxproxy.core.tables import table_name, table_of_arn
from daxproxy.service import item_reads
from daxproxy.service.metrics import Metrics
from daxproxy.service.observe import Outcome

ARN = "arn:aws:dynamodb:us-east-1:123456789012"
GET_ITEM = Operation("GetItem", Kind.ITEM_READ, read_only=True)

# (name or ARN, the table it names, or None where it is not a table's ARN)
EXAMPLES = [
    ("Orders", None),
    ("my.table-1_x", None),
    (f"{ARN}:table/Orders", "Orders"),
    (f"{ARN}:table/my.table-1_x", "my.table-1_x"),
    ("arn:aws:dynamodb::123456789012:global-table/Orders", "Orders"),
    (f"{ARN}:global-table/Orders", "Orders"),
    (f"{ARN}:table/Orders/index/byDate", "Orders"),
    (f"{ARN}:table/Orders/stream/2026-01-02T03:04:05.678", "Orders"),
    (f"{ARN}:table/Orders/backup/01489173575360-b308cd7d", "Orders"),
    (f"{ARN}:table/Orders/export/01234567890123-a1b2c3d4", "Orders"),
    (f"{ARN}:table/Orders/import/01234567890123-a1b2c3d4", "Orders"),
    ("arn:aws-cn:dynamodb:cn-north-1:123456789012:table/Orders", "Orders"),
    ("arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/Orders", "Orders"),
    ("arn:aws:dynamodb:ddblocal:000000000000:table/Orders", "Orders"),
    # Malformed: not a table's ARN, so no table.
    ("arn:aws:dynamodb:us-east-1:123456789012:table/", None),
    ("arn:aws:dynamodb:us-east-1:123456789012:table//index/i", None),
    ("arn:aws:dynamodb:us-east-1:123456789012:Orders", None),
    ("arn:aws:dynamodb:us-east-1:123456789012:tables/Orders", None),
    ("arn:aws:s3:::bucket/table/Orders", None),
    ("arn:aws:dynamodb:us-east-1:table/Orders", None),
    ("arn:aws:dynamodb:us-east-1:1:2:table/Orders", None),
    ("arn::dynamodb:us-east-1:1:table/Orders", None),
    ("arn:aws:dynamodb:us-east-1:1:table/Or:ders", None),
    ("xarn:aws:dynamodb:us-east-1:1:table/Orders", None),
    ("arn:", None),
    ("", None),
]


@pytest.mark.parametrize(("value", "table"), EXAMPLES)
def test_table_of_arn(value: str, table: str | None) -> None:
    assert table_of_arn(value) == table


@pytest.mark.parametrize(("value", "table"), EXAMPLES)
def test_table_name(value: str, table: str | None) -> None:
    # A name is itself; a malformed ARN stays as it is (no table's name has a ":").
    assert table_name(value) == (value if table is None else table)


@pytest.mark.parametrize(("value", "table"), EXAMPLES)
def test_every_reader_reads_a_table_name_alike(value: str, table: str | None) -> None:
    expected = value if table is None else table
    assert item_reads._plain_name(value) == expected
    metrics = Metrics(per_table=True)
    metrics.observed(Outcome("GetItem", value, "miss", 200, None, 0.001))
    assert [name for _, name, _, _ in metrics.tables] == [expected]
    if value:
        assert table_of({"TableName": value}) == expected
        # The access check: a malformed ARN names no table it can check, so only a key
        # that may use every table may send it.
        checked = access.Unknown.TABLE if value.startswith("arn:") and table is None else expected
        assert access.needs(GET_ITEM, {"TableName": value}) == [("GetItem", checked)]
