"""The table a ``TableName`` or an ARN names: one reading for the caches, the metrics and
the access check.

DynamoDB accepts a table's ARN wherever it takes a ``TableName``, and the ARNs of a table's
parts begin with the table's: ``arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME`` then
``/index/...``, ``/stream/...``, ``/backup/...``, ``/export/...`` or ``/import/...``; a global
table's is ``...:global-table/NAME`` (its region empty). Any partition (``aws``, ``aws-cn``,
``aws-us-gov``, ...) and any region or account, as emulators invent their own
(``ddblocal``, ``000000000000``).

:func:`table_of_arn` is None for anything else; :func:`table_name` then keeps the string as
it is, so a malformed ARN stays a name of its own (no table's: a table name has no ``:``),
which DynamoDB will refuse.
"""

from __future__ import annotations

import re

_TABLE_ARN = re.compile(
    r"arn:[^:/]+:dynamodb:[^:/]*:[^:/]*:(?:global-)?table/([^:/]+)(?:/.*)?",
    re.ASCII | re.DOTALL,
)


def table_of_arn(arn: str) -> str | None:
    """The table an ARN of a table (or of its index, stream, backup, export or import)
    names; None when ``arn`` is no such ARN."""
    match = _TABLE_ARN.fullmatch(arn)
    return match.group(1) if match else None


def table_name(name_or_arn: str) -> str:
    """The table's name: a name as it is, the table of a table's ARN; anything else that
    starts with ``arn:`` unchanged."""
    if name_or_arn.startswith("arn:"):
        return table_of_arn(name_or_arn) or name_or_arn
    return name_or_arn
