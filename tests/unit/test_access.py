"""The auth file and the grant check: what each request needs, what each key may do, and
the proxy refusing before any cache or upstream call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from daxproxy.core import access, wire
from daxproxy.core.access import Access, Unknown, grant, needs, statement_needs
from daxproxy.core.config import SettingError, Settings
from daxproxy.core.errors import AccessDeniedException
from daxproxy.core.operations import Kind, Operation, lookup
from daxproxy.edge.auth import grants_of, load_grants
from daxproxy.service.proxy import ClientRequest, Proxy
from tests.fakes import FakeUpstream
from tests.signing import sigv4_headers

SECRET = "s3cr3t-Orders-wJalrXUtnFEMI/K7MDENG"
ENV_SECRET = "s3cr3t-from-env-bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


def op(name: str) -> Operation:
    """The operation of that name, DynamoDB's or (failing that) DynamoDB Streams'."""
    found = lookup(wire.parse_target(f"DynamoDB_20120810.{name}"))
    if found.kind is Kind.UNKNOWN:
        streams = lookup(wire.parse_target(f"DynamoDBStreams_20120810.{name}"))
        return found if streams.kind is Kind.UNKNOWN else streams
    return found


# --- What a request needs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "payload", "expected"),
    [
        ("GetItem", {"TableName": "Orders", "Key": {}}, [("GetItem", "Orders")]),
        (
            "GetItem",
            {"TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/Orders"},
            [("GetItem", "Orders")],
        ),
        (
            "BatchGetItem",
            {"RequestItems": {"Users": {"Keys": []}, "Orders": {"Keys": []}}},
            [("BatchGetItem", "Orders"), ("BatchGetItem", "Users")],
        ),
        (
            "BatchWriteItem",
            {"RequestItems": {"Orders": []}},
            [("BatchWriteItem", "Orders")],
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "Orders", "Item": {}}},
                    {"ConditionCheck": {"TableName": "Users", "Key": {}}},
                ]
            },
            [("TransactWriteItems", "Orders"), ("TransactWriteItems", "Users")],
        ),
        (
            "TransactGetItems",
            {"TransactItems": [{"Get": {"TableName": "Orders", "Key": {}}}]},
            [("TransactGetItems", "Orders")],
        ),
        ("ListTables", {}, [("ListTables", None)]),
        ("ListBackups", {"TableName": "Orders"}, [("ListBackups", "Orders")]),
        ("DescribeTable", {}, [("DescribeTable", Unknown.TABLE)]),
        ("DescribeTable", {"TableName": 7}, [("DescribeTable", Unknown.TABLE)]),
        ("BatchGetItem", {"RequestItems": []}, [("BatchGetItem", Unknown.TABLE)]),
        (
            "TagResource",
            {"ResourceArn": "arn:aws:dynamodb:us-east-1:1:table/Orders", "Tags": []},
            [("TagResource", "Orders")],
        ),
        (
            "DescribeBackup",
            {"BackupArn": "arn:aws:dynamodb:us-east-1:1:table/Orders/backup/0163"},
            [("DescribeBackup", "Orders")],
        ),
        ("TagResource", {"ResourceArn": "arn:aws:s3:::bucket"}, [("TagResource", Unknown.TABLE)]),
        (
            "GetRecords",
            {"ShardIterator": "arn:aws:dynamodb:us-east-1:1:table/Orders/stream/2026|1|AAAA"},
            [("GetRecords", "Orders")],
        ),
        ("GetRecords", {"ShardIterator": "opaque"}, [("GetRecords", Unknown.TABLE)]),
        (
            "DescribeStream",
            {"StreamArn": "arn:aws:dynamodb:us-east-1:1:table/Orders/stream/2026"},
            [("DescribeStream", "Orders")],
        ),
        # An operation the proxy does not know needs every table, whatever it names.
        ("FutureOperation", {"TableName": "Orders"}, [("FutureOperation", Unknown.TABLE)]),
        (
            "FutureOperation",
            {"TableName": "Orders", "OtherTables": ["Secrets"]},
            [("FutureOperation", Unknown.TABLE)],
        ),
        ("FutureOperation", {}, [("FutureOperation", Unknown.TABLE)]),
        (
            "GetItem",
            {"TableName": "arn:aws:dynamodb::1:global-table/Orders"},
            [("GetItem", "Orders")],
        ),
        (
            "GetItem",
            {"TableName": "arn:aws-cn:dynamodb:cn-north-1:1:table/Orders"},
            [("GetItem", "Orders")],
        ),
        (
            "GetItem",
            {"TableName": "arn:aws:dynamodb:us-east-1:1:table/"},
            [("GetItem", Unknown.TABLE)],
        ),
    ],
)
def test_needs(operation: str, payload: dict[str, Any], expected: list[object]) -> None:
    assert needs(op(operation), payload) == expected


SELECT, INSERT, UPDATE, DELETE = access.PARTIQL_ACTIONS
EVERYTHING = [(action, Unknown.TABLE) for action in access.PARTIQL_ACTIONS]


EXECUTE, BATCH, TRANSACTION = "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"


@pytest.mark.parametrize(
    ("operation", "payload", "expected"),
    [
        (EXECUTE, {"Statement": 'SELECT * FROM "Orders" WHERE pk = ?'}, [(SELECT, "Orders")]),
        (EXECUTE, {"Statement": 'select a FROM "Orders"."byDate"'}, [(SELECT, "Orders")]),
        (EXECUTE, {"Statement": "SELECT * FROM Orders WHERE a = 'x'"}, [(SELECT, "Orders")]),
        (EXECUTE, {"Statement": 'SELECT * FROM "we""ird"'}, [(SELECT, 'we"ird')]),
        (EXECUTE, {"Statement": "INSERT INTO \"Users\" VALUE {'pk': 'a'}"}, [(INSERT, "Users")]),
        (EXECUTE, {"Statement": 'UPDATE "Users" SET a = 1 WHERE pk = ?'}, [(UPDATE, "Users")]),
        (EXECUTE, {"Statement": 'DELETE FROM "Users" WHERE pk = ?'}, [(DELETE, "Users")]),
        # A table named by its ARN is checked as that table.
        (
            EXECUTE,
            {"Statement": 'UPDATE "arn:aws:dynamodb:us-east-1:1:table/Users" SET a = 1'},
            [(UPDATE, "Users")],
        ),
        # A FROM in a string literal is data, not a keyword.
        (
            EXECUTE,
            {"Statement": 'SELECT * FROM "Orders" WHERE note = \'FROM "Secrets"\''},
            [(SELECT, "Orders")],
        ),
        (
            BATCH,
            {
                "Statements": [
                    {"Statement": 'SELECT * FROM "Orders"'},
                    {"Statement": 'DELETE FROM "Users" WHERE pk = ?'},
                ]
            },
            [(SELECT, "Orders"), (DELETE, "Users")],
        ),
        (
            TRANSACTION,
            {
                "TransactStatements": [
                    {"Statement": 'EXISTS(SELECT * FROM "Orders" WHERE pk = ?)'},
                    {"Statement": "INSERT INTO \"Users\" VALUE {'pk': 'x'}"},
                ]
            },
            [(SELECT, "Orders"), (INSERT, "Users")],
        ),
        (EXECUTE, {"Statement": "UPSERT something"}, EVERYTHING),
        (EXECUTE, {"Statement": "UPDATE Users.x SET a = 1 WHERE pk = ?"}, EVERYTHING),
        (EXECUTE, {"Statement": "SELECT 1"}, EVERYTHING),
        (EXECUTE, {"Statement": 'SELECT * FROM "Orders" /* "x" */'}, EVERYTHING),
        (EXECUTE, {"Statement": 'SELECT * FROM "Orders" -- comment'}, EVERYTHING),
        (EXECUTE, {"Statement": 42}, EVERYTHING),
        (BATCH, {"Statements": ["not a map"]}, EVERYTHING),
        (BATCH, {"Statements": {"Statement": 'SELECT * FROM "Orders"'}}, EVERYTHING),
        (TRANSACTION, {"TransactStatements": "SELECT * FROM Orders"}, EVERYTHING),
        (EXECUTE, {}, EVERYTHING),
        (BATCH, {"Statements": []}, EVERYTHING),
    ],
)
def test_statement_needs(operation: str, payload: dict[str, Any], expected: list[object]) -> None:
    assert statement_needs(operation, payload) == expected
    assert needs(op(operation), payload) == expected


WRITES = [
    {"Statement": 'UPDATE "Orders" SET v = 1 WHERE pk = ?'},
    {"Statement": 'DELETE FROM "Users" WHERE pk = ?'},
]
DECOY = 'SELECT * FROM "Orders" WHERE pk = ?'


@pytest.mark.parametrize(
    ("operation", "payload", "expected"),
    [
        # The writes an ExecuteTransaction runs, beside a decoy SELECT in "Statement".
        (
            TRANSACTION,
            {"Statement": DECOY, "TransactStatements": WRITES},
            [(UPDATE, "Orders"), (DELETE, "Users")],
        ),
        (
            BATCH,
            {"Statement": DECOY, "Statements": WRITES},
            [(UPDATE, "Orders"), (DELETE, "Users")],
        ),
        (
            BATCH,
            {"Statements": WRITES, "TransactStatements": [{"Statement": DECOY}]},
            [(UPDATE, "Orders"), (DELETE, "Users")],
        ),
        # ExecuteStatement runs "Statement" only; the lists beside it are not its.
        (
            EXECUTE,
            {
                "Statement": "INSERT INTO \"Users\" VALUE {'pk': ?}",
                "Statements": [{"Statement": DECOY}],
                "TransactStatements": [{"Statement": DECOY}],
            },
            [(INSERT, "Users")],
        ),
        # A decoy member does not stand in for a missing one: no statements, every table.
        (TRANSACTION, {"Statement": DECOY}, EVERYTHING),
        (TRANSACTION, {"Statements": [{"Statement": DECOY}]}, EVERYTHING),
        (EXECUTE, {"TransactStatements": [{"Statement": DECOY}]}, EVERYTHING),
    ],
)
def test_only_the_member_the_operation_runs_is_read(
    operation: str, payload: dict[str, Any], expected: list[object]
) -> None:
    assert needs(op(operation), payload) == expected


def test_a_decoy_select_does_not_let_a_reader_write() -> None:
    reader = grant("K", "s", ["*"], ["read", "describe"])
    check = Access({"K": reader}, region=REGION, skew_seconds=300)
    payload = {"Statement": DECOY, "TransactStatements": WRITES}
    with pytest.raises(AccessDeniedException) as caught:
        check.authorize("K", op(TRANSACTION), payload)
    assert "dynamodb:PartiQLUpdate" in caught.value.message
    with pytest.raises(AccessDeniedException):
        check.authorize("K", op(BATCH), {"Statement": DECOY, "Statements": WRITES})
    check.authorize("K", op(EXECUTE), {"Statement": DECOY, "Statements": WRITES})  # a read


@pytest.mark.parametrize(
    "statement",
    ["UPSERT INTO Orders", "UPDATE Orders.x SET a = 1", 'DELETE FROM "Orders" -- x', "SELECT 1"],
)
def test_a_statement_the_proxy_cannot_read_needs_a_key_that_may_write_everywhere(
    statement: str,
) -> None:
    payload = {"Statement": statement}
    everywhere = grant("ALL", "s", ["*"], ["read", "write"])
    writes_orders = grant("ORDERS", "s", ["Orders"], ["*"])
    reads_all = grant("READER", "s", ["*"], ["read"])
    writes_all = grant("WRITER", "s", ["*"], ["write"])
    keys = {g.key_id: g for g in (everywhere, writes_orders, reads_all, writes_all)}
    check = Access(keys, region=REGION, skew_seconds=300)
    check.authorize("ALL", op(EXECUTE), payload)
    for key in ("ORDERS", "READER", "WRITER"):
        with pytest.raises(AccessDeniedException) as caught:
            check.authorize(key, op(EXECUTE), payload)
        assert "an unknown table (the proxy could not read which)" in caught.value.message


def test_an_unknown_operation_needs_every_table_even_when_it_names_one() -> None:
    orders_only = grant("ORDERS", "s", ["Orders"], ["*"])
    everything = grant("ALL", "s", ["*"], ["*"])
    check = Access({"ORDERS": orders_only, "ALL": everything}, region=REGION, skew_seconds=300)
    payload = {"TableName": "Orders", "TargetTables": ["Secrets"]}
    with pytest.raises(AccessDeniedException) as caught:
        check.authorize("ORDERS", op("FutureOperation"), payload)
    assert "dynamodb:FutureOperation on resource: an unknown table" in caught.value.message
    check.authorize("ALL", op("FutureOperation"), payload)
    check.authorize("ORDERS", op("GetItem"), {"TableName": "Orders", "Key": {}})


# --- What a key may do ---------------------------------------------------------------


def test_tables_are_names_or_globs() -> None:
    key = grant("K", "s", ["Orders", "Users-*"], ["read"])
    assert key.may("GetItem", "Orders")
    assert key.may("GetItem", "Users-eu")
    assert key.may("GetItem", "Users-")
    assert not key.may("GetItem", "Users")
    assert not key.may("GetItem", "Orders2")
    assert not key.may("GetItem", "orders")
    assert not key.may("GetItem", Unknown.TABLE)
    assert key.may("GetItem", None) is True  # a request without a table needs only the action
    everything = grant("K", "s", ["*"], ["*"])
    assert everything.may("AnyOperationAtAll", Unknown.TABLE)


def test_groups() -> None:
    reader = grant("K", "s", ["*"], ["read"])
    assert all(reader.may(a, "t") for a in ("GetItem", "Query", "Scan", "BatchGetItem", SELECT))
    assert not any(reader.may(a, "t") for a in ("PutItem", INSERT, "DescribeTable"))
    writer = grant("K", "s", ["*"], ["write"])
    assert all(writer.may(a, "t") for a in ("PutItem", "BatchWriteItem", INSERT, UPDATE, DELETE))
    assert not writer.may("GetItem", "t")
    describe = grant("K", "s", ["*"], ["describe"])
    assert describe.may("DescribeTable", "t") and describe.may("ListTables", None)
    assert not describe.may("CreateTable", "t")
    manage = grant("K", "s", ["*"], ["manage"])
    assert all(manage.may(a, "t") for a in ("CreateTable", "DeleteTable", "UpdateTable"))
    assert not manage.may("DescribeTable", "t")
    streams = grant("K", "s", ["*"], ["streams"])
    assert streams.may("GetRecords", "t") and not streams.may("GetItem", "t")
    single = grant("K", "s", ["*"], ["GetItem", "PartiQLUpdate"])
    assert single.may("GetItem", "t") and single.may(UPDATE, "t")
    assert not single.may("Query", "t")


def test_a_secret_is_never_in_a_grants_repr() -> None:
    assert SECRET not in repr(grant("K", SECRET, ["*"], ["*"]))


# --- The file ------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    return str(path)


GOOD = f"""
[[keys]]
access_key_id = "AKIAORDERS"
secret_access_key = "{SECRET}"
tables = ["Orders", "Orders-*"]
operations = ["read", "write", "describe"]

[[keys]]
access_key_id = "AKIAREPORTS"
secret_access_key_env = "REPORTS_SECRET"
tables = ["*"]
operations = ["read", "PartiQLSelect"]
"""


def test_a_good_file_loads(tmp_path: Path) -> None:
    grants = load_grants(write(tmp_path, GOOD), {"REPORTS_SECRET": ENV_SECRET})
    assert set(grants) == {"AKIAORDERS", "AKIAREPORTS"}
    assert grants["AKIAORDERS"].secret == SECRET
    assert grants["AKIAREPORTS"].secret == ENV_SECRET
    assert grants["AKIAORDERS"].may("PutItem", "Orders-2026")
    assert not grants["AKIAREPORTS"].may("PutItem", "Orders")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[keys]\n", "is not valid TOML"),
        ("", "has no [[keys]] entries"),
        ("keys = []", "has no [[keys]] entries"),
        ("[other]\na = 1", "unknown top-level key 'other'"),
        (GOOD.replace('tables = ["*"]', 'tables = ["*"]\nrole = "x"'), "unknown field 'role'"),
        (GOOD.replace("REPORTS_SECRET", "NOT_SET_ANYWHERE"), "'NOT_SET_ANYWHERE' is not set"),
        (GOOD.replace("AKIAREPORTS", "AKIAORDERS"), "repeats access_key_id 'AKIAORDERS'"),
        (GOOD.replace('"PartiQLSelect"', '"ExecuteStatement"'), "'ExecuteStatement' is neither"),
        (GOOD.replace('"PartiQLSelect"', '"GetIten"'), "'GetIten' is neither"),
        (GOOD.replace('tables = ["*"]', "tables = []"), "tables must be a non-empty list"),
        (GOOD.replace('"AKIAREPORTS"', '"AKIA REPORTS"'), "access_key_id must be"),
        (
            GOOD.replace('secret_access_key_env = "REPORTS_SECRET"', ""),
            "exactly one of secret_access_key, secret_access_key_env",
        ),
        (
            GOOD.replace(
                'secret_access_key_env = "REPORTS_SECRET"',
                f'secret_access_key_env = "REPORTS_SECRET"\nsecret_access_key = "{SECRET}"',
            ),
            "exactly one of",
        ),
    ],
)
def test_a_bad_file_names_the_setting_and_the_problem_but_no_secret(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(SettingError) as caught:
        load_grants(write(tmp_path, text), {"REPORTS_SECRET": ENV_SECRET})
    assert caught.value.setting == "auth_file"
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value) and ENV_SECRET not in str(caught.value)


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingError) as caught:
        load_grants(str(tmp_path / "nowhere.toml"), {})
    assert caught.value.setting == "auth_file"
    assert "cannot read" in str(caught.value)


def test_no_auth_file_no_access_check() -> None:
    assert grants_of(Settings(), {}) is None
    assert access.from_settings(Settings(), REGION, None) is None


def test_from_settings_reads_the_skew(tmp_path: Path) -> None:
    settings = Settings(auth_file=write(tmp_path, GOOD), auth_clock_skew_millis=60_000)
    grants = grants_of(settings, {"REPORTS_SECRET": ENV_SECRET})
    checker = access.from_settings(settings, REGION, grants)
    assert checker is not None and len(checker) == 2


def test_an_auth_file_whose_grants_were_not_loaded_fails_closed(tmp_path: Path) -> None:
    settings = Settings(auth_file=write(tmp_path, GOOD))
    with pytest.raises(SettingError) as caught:
        access.from_settings(settings, REGION, None)
    assert caught.value.setting == "auth_file"


def test_the_core_reads_no_file_and_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The auth file's text and the secrets' variables are handed to the core."""
    monkeypatch.setenv("REPORTS_SECRET", "from-the-process")
    text = GOOD.encode()
    grants = access.parse_grants(text, "given.toml", {"REPORTS_SECRET": ENV_SECRET})
    assert grants["AKIAREPORTS"].secret == ENV_SECRET
    with pytest.raises(SettingError) as caught:
        access.parse_grants(text, "given.toml", {})
    assert "'REPORTS_SECRET' is not set" in str(caught.value)
    # The edge reads the process's environment when given none.
    assert load_grants(write(tmp_path, GOOD))["AKIAREPORTS"].secret == "from-the-process"


# --- The check, end to end -----------------------------------------------------------


def signed_request(
    target: str, payload: dict[str, Any], key: str = "AKIAORDERS", secret: str = SECRET
) -> ClientRequest:
    body = orjson.dumps(payload)
    signed = sigv4_headers(
        "http://localhost:8111/", target, body, key=key, secret=secret, region=REGION
    )
    headers = [("Host", "localhost:8111"), *signed]
    return ClientRequest(tuple(headers), body, target, None, "/")


def checker(tmp_path: Path) -> Access:
    grants = load_grants(write(tmp_path, GOOD), {"REPORTS_SECRET": ENV_SECRET})
    return Access(grants, region=REGION, skew_seconds=300)


def test_access_denied_names_the_key_action_and_table(tmp_path: Path) -> None:
    check = checker(tmp_path)
    with pytest.raises(AccessDeniedException) as caught:
        check.authorize("AKIAORDERS", op("GetItem"), {"TableName": "Users"})
    assert caught.value.message == (
        "User: AKIAORDERS is not authorized to perform: dynamodb:GetItem on resource: "
        "arn:aws:dynamodb:us-east-1:*:table/Users because no entry of the proxy's auth_file "
        "allows it"
    )
    assert caught.value.type == "com.amazon.coral.service#AccessDeniedException"
    assert caught.value.status == 400
    with pytest.raises(AccessDeniedException) as listing:
        check.authorize("AKIAORDERS", op("ListStreams"), {})
    assert "dynamodb:ListStreams on resource: *" in listing.value.message


async def test_the_proxy_refuses_before_the_upstream(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    proxy = Proxy(upstream, max_body_bytes=1 << 20, access=checker(tmp_path))
    get = "DynamoDB_20120810.GetItem"
    allowed = await proxy.handle(signed_request(get, {"TableName": "Orders", "Key": {}}))
    assert allowed.status == 200
    assert len(upstream.sent) == 1
    cases = [
        (signed_request(get, {"TableName": "Users", "Key": {}}), "AccessDeniedException"),
        (
            signed_request(get, {"TableName": "Orders", "Key": {}}, secret="wrong"),
            "InvalidSignatureException",
        ),
        (
            signed_request(get, {"TableName": "Orders", "Key": {}}, key="AKIASTRANGER"),
            "UnrecognizedClientException",
        ),
        (
            ClientRequest((("Host", "localhost:8111"),), b'{"TableName":"Orders"}', get),
            "MissingAuthenticationTokenException",
        ),
    ]
    for request, error in cases:
        answer = await proxy.handle(request)
        assert answer.status == 400
        assert orjson.loads(answer.body)["__type"] == f"com.amazon.coral.service#{error}"
    assert len(upstream.sent) == 1


def test_the_example_auth_file_loads() -> None:
    example = Path(__file__).parents[2] / "config" / "auth.example.toml"
    environ = {"ORDERS_APP_SECRET": "a", "REPORTING_SECRET": "b"}
    grants = load_grants(str(example), environ)
    assert grants["AKIAORDERSAPP0000001"].may("DescribeTable", "Orders-2026")
    assert not grants["AKIAORDERSAPP0000001"].may("GetItem", "Users")
    assert grants["AKIAREPORTING0000002"].may("PartiQLSelect", "Users")
    assert not grants["AKIAREPORTING0000002"].may("PutItem", "Users")
