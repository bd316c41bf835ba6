"""The JavaScript DAX client's scenario (``tests/integration/test_dax_js_client.py``), as data.

:data:`STEPS` is a list of calls, each made once through the DAX client (or its
DocumentClient, or the SDK over HTTP on the same port) by ``tests/js/dax_client.mjs`` and
once by boto3 straight at moto: every data operation on hash-only and hash+range tables
(:data:`TABLES`, named by :func:`t`) with S, N and B keys, every attribute type. Parameters
are DynamoDB JSON with binary values as base64 text, so that both sides read them.
"""

from __future__ import annotations

import uuid
from typing import Any

PREFIX = f"daxjs-{uuid.uuid4().hex[:8]}"

# Table -> key schema (name, type), hash first.
TABLES: dict[str, list[tuple[str, str]]] = {
    "hs": [("pk", "S")],
    "hn": [("pk", "N")],
    "hb": [("pk", "B")],
    "sn": [("pk", "S"), ("sk", "N")],
    "ns": [("pk", "N"), ("sk", "S")],
    "sb": [("pk", "S"), ("sk", "B")],
    "bn": [("pk", "B"), ("sk", "N")],
}


def t(name: str) -> str:
    """A table's name in this run (its own tables, on both servers)."""
    return f"{PREFIX}-{name}"


# sn's indexes: a global one on (g, sk) and a local one on (pk, lsk).
INDEXES: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "g", "AttributeType": "S"},
        {"AttributeName": "lsk", "AttributeType": "S"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by_g",
            "KeySchema": [
                {"AttributeName": "g", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "LocalSecondaryIndexes": [
        {
            "IndexName": "by_l",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "lsk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ],
}

EVERY_TYPE = {
    "s": {"S": "text ☃"},
    "n": {"N": "-12.5"},
    "big": {"N": "12345678901234567890123456789012345678"},
    "tiny": {"N": "0.000000000001"},
    "b": {"B": "AAH/"},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "nothing": {"NULL": True},
    "empty": {"S": ""},
    "no bytes": {"B": ""},
    "ünï.cödé": {"N": "1e-7"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "-2.5", "3.14"]},
    "bs": {"BS": ["AQ==", "Ag=="]},
    "l": {"L": [{"S": "x"}, {"N": "1"}, {"L": []}, {"M": {}}, {"B": "/w=="}]},
    "m": {"M": {"inner": {"M": {"deep": {"SS": ["z"]}}}, "n": {"N": "3"}}},
}

KEYS: list[tuple[str, dict[str, Any]]] = [
    ("hs", {"pk": {"S": "h1"}}),
    ("hn", {"pk": {"N": "-7.25"}}),
    ("hb", {"pk": {"B": "/gA="}}),
    ("sn", {"pk": {"S": "u1"}, "sk": {"N": "-3.25"}}),
    ("sn", {"pk": {"S": "u1"}, "sk": {"N": "0"}}),
    ("sn", {"pk": {"S": "u1"}, "sk": {"N": "1E+20"}}),
    ("ns", {"pk": {"N": "42"}, "sk": {"S": "a/b"}}),
    ("sb", {"pk": {"S": "u2"}, "sk": {"B": "AA=="}}),
    ("bn", {"pk": {"B": "AQI="}, "sk": {"N": "-0.001"}}),
]

# The DocumentClient's methods, by the operation they make.
DOCUMENT_OPS = {
    "get": "GetItem",
    "put": "PutItem",
    "update": "UpdateItem",
    "delete": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batchGet": "BatchGetItem",
    "batchWrite": "BatchWriteItem",
    "transactGet": "TransactGetItems",
    "transactWrite": "TransactWriteItems",
}

# The proxy's counter of hits, by the operation that reads.
HITS = {
    "GetItem": "daxproxy_item_cache_hits_total",
    "BatchGetItem": "daxproxy_item_cache_hits_total",
    "Query": "daxproxy_query_cache_hits_total",
    "Scan": "daxproxy_scan_cache_hits_total",
}


def step(
    op: str,
    via: str = "dax",
    *,
    hit: bool = False,
    pages: bool = False,
    error: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """One call: ``op`` as the client named by ``via`` spells it, ``params`` in DynamoDB
    JSON (binary as base64); ``hit``: every key read must be a hit by the proxy's counter
    (:data:`HITS`); ``error``: the exception both sides must raise."""
    operation = DOCUMENT_OPS[op] if via == "document" else op[0].upper() + op[1:]
    return {
        "op": op,
        "operation": operation,
        "via": via,
        "pages": pages,
        "hits": HITS[operation] if hit else None,
        "error": error,
        "params": params,
    }


def _writes() -> list[dict[str, Any]]:
    steps = []
    for name, key in KEYS:
        steps.append(step("putItem", TableName=t(name), Item={**key, **EVERY_TYPE}))
        steps.append(step("getItem", TableName=t(name), Key=key))
        steps.append(step("getItem", TableName=t(name), Key=key, hit=True))
    sn_key = KEYS[3][1]
    steps += [
        step(
            "getItem",
            TableName=t("sn"),
            Key=sn_key,
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        ),
        step(
            "getItem",
            TableName=t("sn"),
            Key=sn_key,
            ProjectionExpression="#s, m.#in.deep, l, absent, m.absent",
            ExpressionAttributeNames={"#s": "s", "#in": "inner"},
        ),
        step(
            "getItem",
            TableName=t("sn"),
            Key=sn_key,
            ProjectionExpression="l[4], m.#in.deep",  # moto keeps one index of a list only
            ExpressionAttributeNames={"#in": "inner"},
        ),
        step(
            "putItem",
            TableName=t("hs"),
            Item={"pk": {"S": "h1"}, "s": {"S": "v2"}, "n": {"N": "-1"}},
            ConditionExpression="attribute_exists(pk) AND #n < :zero",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":zero": {"N": "0"}},
            ReturnValues="ALL_OLD",
            ReturnConsumedCapacity="TOTAL",
        ),
        step(
            "putItem",
            TableName=t("hs"),
            Item={"pk": {"S": "h1"}},
            ConditionExpression="attribute_not_exists(pk)",
            error="ConditionalCheckFailedException",
        ),
    ]
    written = {"pk": {"S": "w"}, "sk": {"N": "-0.5"}}
    steps.append(
        step(
            "putItem",
            TableName=t("sn"),
            Item={**written, "name": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x", "y"]}}
            | {"l": {"L": []}, "gone": {"BOOL": True}, "m": {"M": {"a": {"N": "1"}}}},
            ReturnItemCollectionMetrics="SIZE",
            ReturnConsumedCapacity="INDEXES",
        )
    )
    for returns in ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"):
        steps.append(
            step(
                "updateItem",
                TableName=t("sn"),
                Key=written,
                UpdateExpression="SET #n = :v, l = list_append(l, :l), m.b = :one "
                "ADD n :one DELETE tags :t REMOVE gone",
                ConditionExpression="#n <> :no AND size(l) < :ten",
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={
                    ":v": {"S": returns},
                    ":l": {"L": [{"N": "1.5"}]},
                    ":one": {"N": "1"},
                    ":t": {"SS": ["y"]},
                    ":no": {"S": "nobody"},
                    ":ten": {"N": "10"},
                },
                ReturnValues=returns,
                **({"ReturnConsumedCapacity": "TOTAL"} if returns == "ALL_NEW" else {}),
            )
        )
    steps += [
        step(
            "updateItem",
            TableName=t("hb"),
            Key=KEYS[2][1],
            UpdateExpression="SET m.#in.deep = :d, l[0] = :x, #b = :b",
            ExpressionAttributeNames={"#b": "b", "#in": "inner"},  # a reserved word
            ExpressionAttributeValues={
                ":d": {"NS": ["7", "-0.25"]},
                ":x": {"BS": ["AAA="]},
                ":b": {"B": "q83v"},
            },
            ReturnValues="UPDATED_NEW",
        ),
        step("getItem", TableName=t("sn"), Key=written),
        step(
            "deleteItem",
            TableName=t("sn"),
            Key=written,
            ConditionExpression="n > :zero",
            ExpressionAttributeValues={":zero": {"N": "0"}},
            ReturnValues="ALL_OLD",
        ),
        step("getItem", TableName=t("sn"), Key=written),
        # Nothing there before: no old attributes, an upsert's new ones, an unchanged SET.
        step("putItem", TableName=t("hn"), Item={"pk": {"N": "1.5"}}, ReturnValues="ALL_OLD"),
        step("deleteItem", TableName=t("hn"), Key={"pk": {"N": "2"}}, ReturnValues="ALL_OLD"),
        step(
            "updateItem",
            TableName=t("hn"),
            Key={"pk": {"N": "3"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "new"}},
            ReturnValues="UPDATED_OLD",
        ),
        step(
            "updateItem",
            TableName=t("hn"),
            Key={"pk": {"N": "3"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "new"}},
            ReturnValues="UPDATED_NEW",
        ),
        step(
            "getItem",
            TableName=t("hn"),
            Key={"pk": {"N": "-7.25"}},
            ProjectionExpression="pk, #u, #e",
            ExpressionAttributeNames={"#u": "ünï.cödé", "#e": "empty"},
        ),
    ]
    return steps


def _batches_and_transactions() -> list[dict[str, Any]]:
    puts = [{"pk": {"S": f"bw{i}"}, "v": {"NS": [str(i), "-1"]}, "x": {"S": "y"}} for i in range(3)]
    gone = {"pk": {"S": "bw-gone"}}
    ranged = {"pk": {"N": "-3"}, "sk": {"S": "tx"}}
    keep, dropped = {"pk": {"S": "tx-keep"}}, {"pk": {"S": "tx-gone"}}
    transaction = [
        {
            "Put": {
                "TableName": t("ns"),
                "Item": {**ranged, "m": {"M": {"a": {"SS": ["x"]}}}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "Update": {
                "TableName": t("hs"),
                "Key": keep,
                "UpdateExpression": "ADD n :one SET #s = :s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":s": {"S": "done"}},
            }
        },
        {"Delete": {"TableName": t("hs"), "Key": dropped}},
        {
            "ConditionCheck": {
                "TableName": t("hs"),
                "Key": {"pk": {"S": "tx-absent"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]
    batch_keys = {
        t("hs"): {
            "Keys": [{"pk": p["pk"]} for p in puts] + [{"pk": {"S": "absent"}}],
            "ProjectionExpression": "#v, m.x",
            "ExpressionAttributeNames": {"#v": "v"},
        },
        t("ns"): {"Keys": [{"pk": {"N": "42"}, "sk": {"S": "a/b"}}], "ConsistentRead": True},
    }
    cached = {t("hs"): {"Keys": [{"pk": p["pk"]} for p in puts]}}
    return [
        step("putItem", TableName=t("hs"), Item=gone),
        step("putItem", TableName=t("hs"), Item={**keep, "n": {"N": "1"}}),
        step("putItem", TableName=t("hs"), Item={**dropped, "n": {"N": "1"}}),
        step(
            "batchWriteItem",
            RequestItems={
                t("hs"): [{"PutRequest": {"Item": p}} for p in puts]
                + [{"DeleteRequest": {"Key": gone}}],
                t("bn"): [{"PutRequest": {"Item": {"pk": {"B": "AQI="}, "sk": {"N": "7.5"}}}}],
            },
            ReturnConsumedCapacity="TOTAL",
        ),
        step("batchGetItem", RequestItems=batch_keys),
        # Consistent reads, never from the cache: the capacity is DynamoDB's (a hit's is 0).
        step(
            "batchGetItem",
            RequestItems={k: {**v, "ConsistentRead": True} for k, v in batch_keys.items()},
            ReturnConsumedCapacity="TOTAL",
        ),
        step("batchGetItem", RequestItems=cached),
        step("batchGetItem", RequestItems=cached, hit=True),
        step("transactWriteItems", TransactItems=transaction, ReturnConsumedCapacity="TOTAL"),
        step(
            "transactGetItems",
            TransactItems=[
                {"Get": {"TableName": t("hs"), "Key": keep}},
                {"Get": {"TableName": t("hs"), "Key": dropped}},
                # moto returns the key with any projection here; DynamoDB only what is asked.
                {
                    "Get": {
                        "TableName": t("ns"),
                        "Key": ranged,
                        "ProjectionExpression": "m.a, sk, pk",
                    }
                },
            ],
        ),
        step(
            "transactWriteItems",
            TransactItems=[
                {
                    "Put": {
                        **transaction[0]["Put"],
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                transaction[1],
            ],
            error="TransactionCanceledException",
        ),
    ]


def _errors_and_both_protocols() -> list[dict[str, Any]]:
    return [
        step(
            "getItem",
            TableName=t("missing"),
            Key={"pk": {"S": "x"}},
            error="ResourceNotFoundException",
        ),
        step(
            "updateItem",
            TableName=t("hs"),
            Key={"pk": {"S": "h1"}},
            UpdateExpression="ADD s :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            error="ValidationException",
        ),
        step(
            "updateItem",
            TableName=t("hs"),
            Key={"pk": {"S": "h1"}},
            UpdateExpression="SET pk = :x",
            ExpressionAttributeValues={":x": {"S": "x"}},
            error="ValidationException",
        ),
        step("putItem", TableName=t("hs"), Item={"pk": {"S": "via dax"}, "v": {"N": "1"}}),
        step("getItem", "http", TableName=t("hs"), Key={"pk": {"S": "via dax"}}, hit=True),
        step("putItem", "http", TableName=t("hs"), Item={"pk": {"S": "via http"}, "v": {"N": "2"}}),
        step("getItem", TableName=t("hs"), Key={"pk": {"S": "via http"}}, hit=True),
    ]


def _documents() -> list[dict[str, Any]]:
    item = {
        "pk": {"S": "doc"},
        "tags": {"SS": ["a", "b"]},
        "nums": {"NS": ["1", "2.5"]},
        "blob": {"B": "AQID"},
        "notes": {"L": [{"S": "one"}, {"N": "2"}, {"M": {"three": {"N": "3"}}}, {"NULL": True}]},
        "details": {"M": {"city": {"S": "Oslo"}, "ok": {"BOOL": True}}},
    }
    key = {"pk": {"S": "doc"}}
    return [
        step("put", "document", TableName=t("hs"), Item=item),
        step("get", "document", TableName=t("hs"), Key=key),
        step("get", "document", TableName=t("hs"), Key=key, hit=True),
        step(
            "update",
            "document",
            TableName=t("hs"),
            Key=key,
            UpdateExpression="SET details.visits = :n ADD tags :t",
            ExpressionAttributeValues={":n": {"N": "4"}, ":t": {"SS": ["z"]}},
            ReturnValues="ALL_NEW",
        ),
        step(
            "batchWrite",
            "document",
            RequestItems={
                t("sn"): [
                    {"PutRequest": {"Item": {"pk": {"S": "doc"}, "sk": {"N": str(n)}}}}
                    for n in (-1.5, 2)
                ]
            },
        ),
        step(
            "batchGet",
            "document",
            RequestItems={t("sn"): {"Keys": [{"pk": {"S": "doc"}, "sk": {"N": "-1.5"}}]}},
        ),
        step(
            "transactWrite",
            "document",
            TransactItems=[
                {"Put": {"TableName": t("hs"), "Item": {"pk": {"S": "doc2"}, "n": {"N": "1"}}}},
                {
                    "ConditionCheck": {
                        "TableName": t("hs"),
                        "Key": key,
                        "ConditionExpression": "contains(tags, :z)",
                        "ExpressionAttributeValues": {":z": {"S": "z"}},
                    }
                },
            ],
        ),
        step(
            "transactGet",
            "document",
            TransactItems=[{"Get": {"TableName": t("hs"), "Key": {"pk": {"S": "doc2"}}}}],
        ),
        step("delete", "document", TableName=t("hs"), Key=key, ReturnValues="ALL_OLD"),
        step(
            "put",
            "document",
            TableName=t("hs"),
            Item=key,
            ConditionExpression="attribute_exists(pk)",
            error="ConditionalCheckFailedException",
        ),
    ]


def _query_items() -> list[dict[str, Any]]:
    steps = []
    for i, sk in enumerate(["-10", "-2.5", "0", "0.001", "3", "1E+5", "123456789.123"]):
        item = {
            "pk": {"S": "q"},
            "sk": {"N": sk},
            "g": {"S": "even" if i % 2 == 0 else "odd"},
            "lsk": {"S": f"l{7 - i}"},
            "i": {"N": str(i)},
            "m": {"M": {"x": {"N": str(i)}, "y": {"B": "AQ=="}}},
        }
        steps.append(step("putItem", TableName=t("sn"), Item=item))
    return steps


def _reads() -> list[dict[str, Any]]:
    q = {":p": {"S": "q"}}
    queries: list[dict[str, Any]] = [
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": q},
        {
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {**q, ":lo": {"N": "-3"}, ":hi": {"N": "5"}},
            "ScanIndexForward": False,
        },
        {
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "i > :two",
            "ExpressionAttributeValues": {**q, ":two": {"N": "2"}},
            "Limit": 2,
        },
        {
            "KeyConditionExpression": "pk = :p",
            "ProjectionExpression": "#i, m.x",
            "ExpressionAttributeNames": {"#i": "i"},
            "ExpressionAttributeValues": q,
            "Limit": 3,
        },
        {"KeyConditionExpression": "pk = :p", "Select": "COUNT", "ExpressionAttributeValues": q},
        {
            "IndexName": "by_g",
            "KeyConditionExpression": "g = :g AND sk > :lo",
            "ExpressionAttributeValues": {":g": {"S": "even"}, ":lo": {"N": "-100"}},
            "Limit": 1,
            "ReturnConsumedCapacity": "INDEXES",
        },
        {
            "IndexName": "by_l",
            "KeyConditionExpression": "pk = :p AND begins_with(lsk, :a)",
            "ExpressionAttributeValues": {**q, ":a": {"S": "l"}},
            "Limit": 4,
        },
        {
            "KeyConditionExpression": "pk = :p AND sk < :zero",
            "ExpressionAttributeValues": {**q, ":zero": {"N": "0"}},
            "ConsistentRead": True,
            "ReturnConsumedCapacity": "TOTAL",
        },
    ]
    scans: list[dict[str, Any]] = [
        {},
        {"Limit": 2},
        {"Segment": 0, "TotalSegments": 2},
        {"Segment": 1, "TotalSegments": 2},
        {"IndexName": "by_g", "Limit": 3},
        {"FilterExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "odd"}}},
        {"Select": "COUNT", "ConsistentRead": True, "ReturnConsumedCapacity": "TOTAL"},
        {"IndexName": "by_l", "Limit": 3},
        {"Select": "SPECIFIC_ATTRIBUTES", "ProjectionExpression": "sk, i"},
        {"ProjectionExpression": "pk, sk, m.y"},
    ]
    first = queries[0]
    return [
        *(step("query", pages=True, TableName=t("sn"), **r) for r in queries),
        step(
            "query",
            TableName=t("ns"),
            KeyConditionExpression="pk = :n AND begins_with(sk, :a)",
            ExpressionAttributeValues={":n": {"N": "42"}, ":a": {"S": "a"}},
        ),
        step(
            "query",
            TableName=t("hb"),
            KeyConditionExpression="pk = :b",
            ExpressionAttributeValues={":b": {"B": "/gA="}},
        ),
        step(
            "query",
            TableName=t("bn"),
            KeyConditionExpression="pk = :b AND sk <= :x",
            ExpressionAttributeValues={":b": {"B": "AQI="}, ":x": {"N": "0"}},
        ),
        step("query", "document", pages=True, TableName=t("sn"), Limit=3, **first),
        step("query", TableName=t("sn"), **first, hit=True),
        *(step("scan", pages=True, TableName=t("sn"), **r) for r in scans),
        step("scan", "document", pages=True, TableName=t("hs"), Limit=4),
        step("scan", TableName=t("hs")),
        step("scan", TableName=t("hs"), hit=True),
    ]


# Writes before reads: in --mode dax a Query or Scan page cached before a write may be
# served after it (DAX's own staleness), and moto's never is.
STEPS = [
    *_writes(),
    *_batches_and_transactions(),
    *_errors_and_both_protocols(),
    *_documents(),
    *_query_items(),
    *_reads(),
]
