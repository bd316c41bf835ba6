"""The operation table: what each ``X-Amz-Target`` operation is to the proxy.

Names are kept as AWS spells them (botocore's service models ``dynamodb`` and
``dynamodbstreams``). The kind says which cache an operation reads or which entries it
can change; ``read_only`` says whether it has no side effects, so that the proxy may resend
it when a pooled upstream connection turns out to be dead. An operation the table does not
know is forwarded as UNKNOWN: never cached, never resent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from daxproxy.core.wire import Target


class Kind(enum.Enum):
    ITEM_READ = "item_read"  # GetItem
    BATCH_READ = "batch_read"  # BatchGetItem
    QUERY = "query"
    SCAN = "scan"
    ITEM_WRITE = "item_write"  # PutItem, UpdateItem, DeleteItem
    BATCH_WRITE = "batch_write"
    TRANSACT_READ = "transact_read"
    TRANSACT_WRITE = "transact_write"
    PARTIQL = "partiql"  # may read or write; the statement says which
    TABLE_CHANGE = "table_change"  # DeleteTable, UpdateTable: drop what is known of a table
    CONTROL = "control"  # everything else of the control plane
    STREAMS = "streams"  # the DynamoDB Streams API
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    kind: Kind
    read_only: bool


_READ_KINDS = {Kind.ITEM_READ, Kind.BATCH_READ, Kind.QUERY, Kind.SCAN, Kind.TRANSACT_READ}

_DATA_PLANE = {
    "GetItem": Kind.ITEM_READ,
    "BatchGetItem": Kind.BATCH_READ,
    "Query": Kind.QUERY,
    "Scan": Kind.SCAN,
    "PutItem": Kind.ITEM_WRITE,
    "UpdateItem": Kind.ITEM_WRITE,
    "DeleteItem": Kind.ITEM_WRITE,
    "BatchWriteItem": Kind.BATCH_WRITE,
    "TransactGetItems": Kind.TRANSACT_READ,
    "TransactWriteItems": Kind.TRANSACT_WRITE,
    "ExecuteStatement": Kind.PARTIQL,
    "BatchExecuteStatement": Kind.PARTIQL,
    "ExecuteTransaction": Kind.PARTIQL,
    "DeleteTable": Kind.TABLE_CHANGE,
    "UpdateTable": Kind.TABLE_CHANGE,
}

_CONTROL_PLANE = [
    "CreateBackup",
    "CreateGlobalTable",
    "CreateTable",
    "DeleteBackup",
    "DeleteResourcePolicy",
    "DescribeBackup",
    "DescribeContinuousBackups",
    "DescribeContributorInsights",
    "DescribeEndpoints",
    "DescribeExport",
    "DescribeGlobalTable",
    "DescribeGlobalTableSettings",
    "DescribeImport",
    "DescribeKinesisStreamingDestination",
    "DescribeLimits",
    "DescribeTable",
    "DescribeTableReplicaAutoScaling",
    "DescribeTimeToLive",
    "DisableKinesisStreamingDestination",
    "EnableKinesisStreamingDestination",
    "ExportTableToPointInTime",
    "GetResourcePolicy",
    "ImportTable",
    "ListBackups",
    "ListContributorInsights",
    "ListExports",
    "ListGlobalTables",
    "ListImports",
    "ListTables",
    "ListTagsOfResource",
    "PutResourcePolicy",
    "RestoreTableFromBackup",
    "RestoreTableToPointInTime",
    "TagResource",
    "UntagResource",
    "UpdateContinuousBackups",
    "UpdateContributorInsights",
    "UpdateGlobalTable",
    "UpdateGlobalTableSettings",
    "UpdateKinesisStreamingDestination",
    "UpdateTableReplicaAutoScaling",
    "UpdateTimeToLive",
]

_STREAMS = ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")


def _control_is_read_only(name: str) -> bool:
    return name.startswith(("Describe", "List", "Get"))


def _build() -> tuple[dict[str, Operation], dict[str, Operation]]:
    dynamodb = {
        name: Operation(name, kind, kind in _READ_KINDS) for name, kind in _DATA_PLANE.items()
    }
    for name in _CONTROL_PLANE:
        dynamodb[name] = Operation(name, Kind.CONTROL, _control_is_read_only(name))
    streams = {name: Operation(name, Kind.STREAMS, True) for name in _STREAMS}
    return dynamodb, streams


_DYNAMODB_OPERATIONS, _STREAMS_OPERATIONS = _build()


def lookup(target: Target) -> Operation:
    """The operation a target names; UNKNOWN (not read-only) when the table has no entry."""
    table = _STREAMS_OPERATIONS if target.is_streams else _DYNAMODB_OPERATIONS
    operation = table.get(target.operation)
    if operation is None:
        return Operation(target.operation, Kind.UNKNOWN, False)
    return operation


def known(kind: Kind) -> list[Operation]:
    """Every operation the table knows of one kind (for naming them in settings)."""
    return [
        operation
        for table in (_DYNAMODB_OPERATIONS, _STREAMS_OPERATIONS)
        for operation in table.values()
        if operation.kind is kind
    ]
