"""The AWS CLI gets the same answers through the proxy as straight from moto.

One fixed sequence of ``aws dynamodb`` and ``aws dynamodbstreams`` commands (table
lifecycle, item, batch and transactional reads and writes, PartiQL, TTL, tags, the Streams
API and three failing requests) runs once against the proxy and once against a second,
identical moto server. For every command the exit code and the parsed output (or the CLI's
error text) must be equal after :func:`normalize` blanks what two servers choose for
themselves. The CLI is awscli v1 in its own virtualenv (``make test`` installs it): a real
botocore client, with its CRC32 check, its retries and its error parsing, accepts what the
proxy relays and reads the same meaning from it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Endpoints
from tests.integration.harness import REGION, TEST_ENV, normalize

AWS = Path(__file__).resolve().parents[2] / ".venv-awscli" / "bin" / "aws"
COMMAND_TIMEOUT = 60.0
# awscli v1 prints no request id in its error line, but other CLI versions may.
_REQUEST_ID = re.compile(r"\s*\(Request ID: [^)]*\)", re.IGNORECASE)
_MISSING = "missing"  # stands in for an id an earlier command failed to return

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Outcome:
    """One command's result: exit code, and the parsed stdout or the error text."""

    step: str
    command: str
    exit_code: int
    output: Any


@dataclass
class CliSession:
    """Runs ``aws`` commands against one endpoint and records every outcome in order."""

    endpoint: str
    env: dict[str, str]
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, step: str, command: str, *args: str) -> Any:
        """Run ``aws <command> <args>``; stdout as JSON on success, else the error text."""
        argv = [str(AWS), *command.split(), *args]
        argv += ["--output", "json", "--region", REGION, "--endpoint-url", self.endpoint]
        done = subprocess.run(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if done.returncode == 0:
            output: Any = json.loads(done.stdout) if done.stdout.strip() else None
        else:
            output = _REQUEST_ID.sub("", done.stderr).strip()
        self.outcomes.append(Outcome(step, command, done.returncode, output))
        return output


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _item(pk: str, sk: str, **attributes: Any) -> dict[str, Any]:
    return {**_key(pk, sk), **attributes}


def _dig(answer: Any, *path: str | int) -> str:
    """``answer[path...]`` as a string, or a placeholder that makes the next command fail."""
    for part in path:
        try:
            answer = answer[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return str(answer)


def run_sequence(cli: CliSession, table: str) -> None:
    """The fixed sequence; later commands use the ARNs and ids earlier answers returned."""
    cli.run(
        "create",
        "dynamodb create-table",
        "--table-name", table,
        "--attribute-definitions",
        "AttributeName=pk,AttributeType=S",
        "AttributeName=sk,AttributeType=S",
        "--key-schema", "AttributeName=pk,KeyType=HASH", "AttributeName=sk,KeyType=RANGE",
        "--billing-mode", "PAY_PER_REQUEST",
        "--stream-specification", "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
    )  # fmt: skip
    described = cli.run("describe", "dynamodb describe-table", "--table-name", table)
    table_arn = _dig(described, "Table", "TableArn")
    listed = cli.run("list-tables", "dynamodb list-tables")
    if isinstance(listed, dict):
        # The session's moto servers also hold other tests' tables, and those need not be
        # the same on both sides: only this test's table is compared.
        listed["TableNames"] = [name for name in listed["TableNames"] if name == table]
    gsi = {
        "IndexName": "by-g",
        "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"},
    }
    cli.run(
        "update-table",
        "dynamodb update-table",
        "--table-name", table,
        "--attribute-definitions", "AttributeName=g,AttributeType=S",
        "--global-secondary-index-updates", _j([{"Create": gsi}]),
    )  # fmt: skip
    first = _item("a", "1", n={"N": "1"}, g={"S": "g"}, tags={"SS": ["x", "y"]})
    cli.run(
        "put",
        "dynamodb put-item",
        "--table-name", table,
        "--item", _j(first),
        "--return-consumed-capacity", "TOTAL",
    )  # fmt: skip
    cli.run(
        "get",
        "dynamodb get-item",
        "--table-name", table,
        "--key", _j(_key("a", "1")),
        "--consistent-read",
    )  # fmt: skip
    cli.run(
        "update",
        "dynamodb update-item",
        "--table-name", table,
        "--key", _j(_key("a", "1")),
        "--update-expression", "SET n = n + :one, note = :note",
        "--expression-attribute-values", _j({":one": {"N": "1"}, ":note": {"S": "updated"}}),
        "--return-values", "ALL_NEW",
    )  # fmt: skip
    cli.run(
        "conditional-put",
        "dynamodb put-item",
        "--table-name", table,
        "--item", _j(_item("a", "1")),
        "--condition-expression", "attribute_not_exists(pk)",
    )  # fmt: skip
    puts = [{"PutRequest": {"Item": _item("a", str(i), n={"N": str(i)})}} for i in range(2, 6)]
    puts.append({"PutRequest": {"Item": _item("b", "1", g={"S": "g"})}})
    cli.run("batch-write", "dynamodb batch-write-item", "--request-items", _j({table: puts}))
    keys = [_key("a", "2"), _key("a", "3"), _key("a", "9")]  # the last one does not exist
    cli.run("batch-get", "dynamodb batch-get-item", "--request-items", _j({table: {"Keys": keys}}))
    cli.run(
        "query",
        "dynamodb query",
        "--table-name", table,
        "--key-condition-expression", "pk = :pk AND sk BETWEEN :lo AND :hi",
        "--expression-attribute-values",
        _j({":pk": {"S": "a"}, ":lo": {"S": "2"}, ":hi": {"S": "4"}}),
        "--no-scan-index-forward",
    )  # fmt: skip
    cli.run(
        "query-index",
        "dynamodb query",
        "--table-name", table,
        "--index-name", "by-g",
        "--key-condition-expression", "g = :g",
        "--expression-attribute-values", _j({":g": {"S": "g"}}),
    )  # fmt: skip
    cli.run(
        "delete",
        "dynamodb delete-item",
        "--table-name", table,
        "--key", _j(_key("a", "5")),
        "--return-values", "ALL_OLD",
    )  # fmt: skip
    add_ten = {
        "TableName": table,
        "Key": _key("a", "2"),
        "UpdateExpression": "ADD n :ten",
        "ExpressionAttributeValues": {":ten": {"N": "10"}},
    }
    exists = {"TableName": table, "ConditionExpression": "attribute_exists(pk)"}
    cli.run(
        "transact-write",
        "dynamodb transact-write-items",
        "--transact-items",
        _j(
            [
                {"Put": {"TableName": table, "Item": _item("c", "1", n={"N": "7"})}},
                {"Update": add_ten},
                {"ConditionCheck": {**exists, "Key": _key("a", "3")}},
            ]
        ),
    )
    cli.run(
        "cancelled-transact-write",
        "dynamodb transact-write-items",
        "--transact-items",
        _j([{"Update": add_ten}, {"ConditionCheck": {**exists, "Key": _key("z", "9")}}]),
    )
    cli.run(
        "transact-get",
        "dynamodb transact-get-items",
        "--transact-items",
        _j([{"Get": {"TableName": table, "Key": _key(*k)}} for k in (("c", "1"), ("a", "2"))]),
    )
    cli.run(
        "partiql",
        "dynamodb execute-statement",
        "--statement", f'SELECT * FROM "{table}" WHERE pk = ? AND sk = ?',
        "--parameters", _j([{"S": "a"}, {"S": "2"}]),
    )  # fmt: skip
    cli.run("scan", "dynamodb scan", "--table-name", table)
    cli.run(
        "update-ttl",
        "dynamodb update-time-to-live",
        "--table-name", table,
        "--time-to-live-specification", "Enabled=true,AttributeName=expires",
    )  # fmt: skip
    cli.run("describe-ttl", "dynamodb describe-time-to-live", "--table-name", table)
    cli.run(
        "tag",
        "dynamodb tag-resource",
        "--resource-arn", table_arn,
        "--tags", "Key=team,Value=storage", "Key=env,Value=test",
    )  # fmt: skip
    cli.run("list-tags", "dynamodb list-tags-of-resource", "--resource-arn", table_arn)

    streams = cli.run("list-streams", "dynamodbstreams list-streams", "--table-name", table)
    stream_arn = _dig(streams, "Streams", 0, "StreamArn")
    stream = cli.run(
        "describe-stream", "dynamodbstreams describe-stream", "--stream-arn", stream_arn
    )
    iterator = cli.run(
        "shard-iterator",
        "dynamodbstreams get-shard-iterator",
        "--stream-arn", stream_arn,
        "--shard-id", _dig(stream, "StreamDescription", "Shards", 0, "ShardId"),
        "--shard-iterator-type", "TRIM_HORIZON",
    )  # fmt: skip
    cli.run(
        "get-records",
        "dynamodbstreams get-records",
        "--shard-iterator", _dig(iterator, "ShardIterator"),
    )  # fmt: skip

    cli.run(
        "get-missing-table",
        "dynamodb get-item",
        "--table-name", f"{table}-missing",
        "--key", _j(_key("a", "1")),
    )  # fmt: skip
    cli.run("delete-table", "dynamodb delete-table", "--table-name", table)


def _cli_env(tmp_path: Path) -> dict[str, str]:
    """The suite's credentials, and nothing from the user's own AWS configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    absent = str(tmp_path / "no-aws-config")
    return {
        **env,
        **TEST_ENV,
        "AWS_PAGER": "",
        "AWS_CONFIG_FILE": absent,
        "AWS_SHARED_CREDENTIALS_FILE": absent,
    }


def _show(outcome: Outcome) -> str:
    return f"exit {outcome.exit_code}: {json.dumps(outcome.output, indent=1, default=str)}"


def test_awscli_gets_the_same_answers_through_the_proxy_as_from_moto(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    if not AWS.exists():
        pytest.fail(f"the AWS CLI is missing at {AWS}: run `make test`, which installs it")
    table = f"cli-{uuid.uuid4().hex[:8]}"
    env = _cli_env(tmp_path)
    proxied = CliSession(endpoints.proxy, env)
    direct = CliSession(endpoints.direct, env)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for run in [pool.submit(run_sequence, cli, table) for cli in (proxied, direct)]:
            run.result()

    assert [o.step for o in proxied.outcomes] == [o.step for o in direct.outcomes]
    for through_proxy, straight in zip(proxied.outcomes, direct.outcomes, strict=True):
        assert (through_proxy.exit_code, normalize(through_proxy.output)) == (
            straight.exit_code,
            normalize(straight.output),
        ), (
            f"aws {through_proxy.command} ({through_proxy.step}) answered differently\n"
            f"through the proxy: {_show(through_proxy)}\ndirect: {_show(straight)}"
        )

    # The sequence really ran, so that equality means something. The two sides are equal,
    # so the proxy's side alone is checked.
    ran = {o.step: o for o in proxied.outcomes}
    assert len(ran) == len(proxied.outcomes)
    failed = {o.step: o.output for o in proxied.outcomes if o.exit_code != 0}
    assert list(failed) == ["conditional-put", "cancelled-transact-write", "get-missing-table"], (
        failed
    )
    assert "(ConditionalCheckFailedException)" in failed["conditional-put"]
    assert "(TransactionCanceledException)" in failed["cancelled-transact-write"]
    assert "(ResourceNotFoundException)" in failed["get-missing-table"]
    assert ran["create"].output["TableDescription"]["TableName"] == table
    assert ran["list-tables"].output["TableNames"] == [table]
    assert ran["get"].output["Item"] == {
        "pk": {"S": "a"},
        "sk": {"S": "1"},
        "n": {"N": "1"},
        "g": {"S": "g"},
        "tags": {"SS": ["x", "y"]},
    }
    updated = ran["update"].output["Attributes"]
    assert (updated["n"], updated["note"]) == ({"N": "2"}, {"S": "updated"})
    assert len(ran["batch-get"].output["Responses"][table]) == 2
    assert [i["sk"]["S"] for i in ran["query"].output["Items"]] == ["4", "3", "2"]
    assert ran["query-index"].output["Count"] == 2
    assert ran["delete"].output["Attributes"]["n"] == {"N": "5"}
    assert ran["transact-get"].output["Responses"][1]["Item"]["n"] == {"N": "12"}
    assert ran["partiql"].output["Items"][0]["n"] == {"N": "12"}
    assert ran["scan"].output["Count"] == 6
    assert ran["describe-ttl"].output["TimeToLiveDescription"]["AttributeName"] == "expires"
    tags = {t["Key"]: t["Value"] for t in ran["list-tags"].output["Tags"]}
    assert tags == {"team": "storage", "env": "test"}
    records = ran["get-records"].output["Records"]
    assert [r["eventName"] for r in records[:2]] == ["INSERT", "MODIFY"], records
    assert ran["delete-table"].output["TableDescription"]["TableName"] == table
