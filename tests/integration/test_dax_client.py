"""The real Python DAX client (``amazon-dax-client``) in front of moto, through the proxy.

The proxy runs as users start it (``python -m daxproxy``, its ordinary port, a ``data_dir``
of its own): the client is ``AmazonDaxClient`` itself, as DAX users write it, on the port
boto3 reaches over HTTP at the same time. Each answer is compared with boto3's against a
second moto reached straight, after the same writes: every data method, every attribute
type, S/N/B keys, projections with list indexes. The port's rules hold for DAX
connections (the connection cap and gauge, the idle close, SIGTERM's drain), a broken DAX
connection closes alone, a restart with the same ``data_dir`` keeps the attribute-list
ids, every worker serves DAX with the same ids, and ``daxs://`` works on the HTTPS port.
With an ``auth_file``: test_dax_auth.py.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import trustme
from amazondax import AmazonDaxClient
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from daxproxy.dax import cbor, methods
from tests.integration.conftest import Endpoints
from tests.integration.harness import NO_RETRIES, REGION, TEST_ENV, ProxyProcess
from tests.integration.tcp_forwarder import TcpForwarder

T = TypeVar("T")

PREAMBLE = b"".join(cbor.dumps(x) for x in ("J7yne5G", 0, b"s", {"UserAgent": "t"}, 0))
ENDPOINTS = cbor.dumps(1) + cbor.dumps(methods.ENDPOINTS.id)

TABLES: dict[str, dict[str, Any]] = {
    "dax_hash_s": {"pk": "S"},
    "dax_hash_b": {"pk": "B"},
    "dax_s_n": {"pk": "S", "sk": "N"},
    "dax_n_s": {"pk": "N", "sk": "S"},
    "dax_s_b": {"pk": "S", "sk": "B"},
    "dax_gsi": {"pk": "S", "sk": "N"},
}
# dax_gsi's index: partition key g, sort key sk.
GSI = {
    "IndexName": "by_g",
    "KeySchema": [
        {"AttributeName": "g", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "ALL"},
}


def _proxy(upstream: str, *options: str, port: int | None = None) -> ProxyProcess:
    """``python -m daxproxy`` in front of ``upstream``, started (on ``port`` if given)."""
    proxy = ProxyProcess("--upstream", upstream, *options)
    if port is not None:
        proxy.port, proxy.url = port, f"http://127.0.0.1:{port}"
    proxy.start()
    return proxy


def _stop(proxy: ProxyProcess) -> int:
    code = proxy.stop()
    os.unlink(proxy.log_path)
    return code


def _dax_client(port: int) -> Any:
    return AmazonDaxClient(
        endpoint_url=f"dax://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id="AKIDDAX",
        aws_secret_access_key="secret",
    )


def _boto(url: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=NO_RETRIES,
    )


def _create_tables(client: Any) -> None:
    for name, keys in TABLES.items():
        with_names = list(keys.items())
        client.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": n, "KeyType": kind}
                for (n, _), kind in zip(with_names, ("HASH", "RANGE"), strict=False)
            ],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in with_names]
            + ([{"AttributeName": "g", "AttributeType": "S"}] if name == "dax_gsi" else []),
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": [GSI]} if name == "dax_gsi" else {}),
        )


@pytest.fixture(scope="module")
def dax(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    upstream, direct = _boto(endpoints.upstream), _boto(endpoints.direct)
    for client in (upstream, direct):
        _create_tables(client)
    data_dir = str(tmp_path_factory.mktemp("data"))
    proxy = _proxy(endpoints.upstream, "--data-dir", data_dir)
    try:
        yield proxy
    finally:
        _stop(proxy)
        for client in (upstream, direct):
            for name in TABLES:
                client.delete_table(TableName=name)


@pytest.fixture(scope="module")
def client(dax: ProxyProcess) -> Iterator[Any]:
    with _dax_client(dax.port) as client:
        yield client


@pytest.fixture(scope="module")
def direct(endpoints: Endpoints) -> Any:
    return _boto(endpoints.direct)


def _numeric(value: Any) -> Any:
    """Numbers as Decimals: the DAX client spells them as ``str(Decimal)`` does (``1E-12``
    where DynamoDB writes ``0.000000000001``), against DAX itself too; sets sorted."""
    if isinstance(value, dict):
        if set(value) == {"N"}:
            return {"N": Decimal(value["N"])}
        if set(value) == {"NS"}:
            return {"NS": sorted(Decimal(n) for n in value["NS"])}
        if set(value) & {"SS", "BS"} and len(value) == 1:  # a set's order means nothing
            ((kind, members),) = value.items()
            return {kind: sorted(members)}
        return {k: _numeric(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numeric(v) for v in value]
    return value


def _same(call: Callable[[Any], T], client: Any, direct: Any, *, capacity: bool = False) -> T:
    """The call's answer through DAX, once it equals boto3's straight at moto (less the
    ConsumedCapacity moto adds to answers that did not ask for it, unless ``capacity``, and
    the empty ItemCollectionMetrics moto adds to BatchWriteItem's)."""
    ours, theirs = call(client), call(direct)
    for answer in (ours, theirs):
        answer.pop("ResponseMetadata", None)
        if answer.get("ItemCollectionMetrics") == {}:
            del answer["ItemCollectionMetrics"]
        if not capacity:
            answer.pop("ConsumedCapacity", None)
    assert _numeric(ours) == _numeric(theirs)
    return ours


EVERY_TYPE = {
    "s": {"S": "text ☃"},
    "n": {"N": "-12.5"},
    "big": {"N": "12345678901234567890123456789012345678"},
    "tiny": {"N": "0.000000000001"},
    "b": {"B": b"\x00\x01\xff"},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "nothing": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "-2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "l": {"L": [{"S": "x"}, {"N": "1"}, {"L": []}, {"M": {}}]},
    "m": {"M": {"inner": {"M": {"deep": {"SS": ["z"]}}}, "n": {"N": "3"}}},
}

KEYS = [
    ("dax_hash_s", {"pk": {"S": "h1"}}),
    ("dax_hash_b", {"pk": {"B": b"\xfe\x00"}}),
    ("dax_s_n", {"pk": {"S": "u1"}, "sk": {"N": "-3.25"}}),
    ("dax_s_n", {"pk": {"S": "u1"}, "sk": {"N": "0"}}),
    ("dax_s_n", {"pk": {"S": "u1"}, "sk": {"N": "1E+20"}}),
    ("dax_n_s", {"pk": {"N": "-7"}, "sk": {"S": "a/b"}}),
    ("dax_s_b", {"pk": {"S": "u2"}, "sk": {"B": b"\x00"}}),
]


@pytest.mark.parametrize(("table", "key"), KEYS)
def test_put_then_get_every_type_equals_moto(
    client: Any, direct: Any, table: str, key: dict[str, Any]
) -> None:
    item = {**key, **EVERY_TYPE}
    _same(lambda c: c.put_item(TableName=table, Item=item), client, direct)
    got = _same(lambda c: c.get_item(TableName=table, Key=key), client, direct)
    assert _numeric(got["Item"]) == _numeric(item)
    old = _same(
        lambda c: c.put_item(
            TableName=table, Item={**key, "s": {"S": "v2"}}, ReturnValues="ALL_OLD"
        ),
        client,
        direct,
    )
    assert _numeric(old["Attributes"]) == _numeric(item)
    _same(lambda c: c.get_item(TableName=table, Key=key, ConsistentRead=True), client, direct)


def test_a_missing_item_equals_moto(client: Any, direct: Any) -> None:
    assert (
        _same(
            lambda c: c.get_item(TableName="dax_hash_s", Key={"pk": {"S": "absent"}}),
            client,
            direct,
        )
        == {}
    )


def test_consumed_capacity_equals_moto_and_is_zero_on_a_hit(client: Any, direct: Any) -> None:
    key = {"pk": {"S": "cc"}}
    _same(lambda c: c.put_item(TableName="dax_hash_s", Item=key), client, direct)
    _same(
        lambda c: c.get_item(
            TableName="dax_hash_s", Key=key, ConsistentRead=True, ReturnConsumedCapacity="TOTAL"
        ),
        client,
        direct,
        capacity=True,
    )
    client.get_item(TableName="dax_hash_s", Key=key)  # fills the cache
    hit = client.get_item(TableName="dax_hash_s", Key=key, ReturnConsumedCapacity="TOTAL")
    # The behaviour contract: a hit reports zero capacity for the table, as on HTTP.
    assert hit["ConsumedCapacity"] == {"TableName": "dax_hash_s", "CapacityUnits": 0.0}


def test_one_port_and_one_cache_for_both_protocols(
    dax: ProxyProcess, client: Any, endpoints: Endpoints
) -> None:
    """boto3 over HTTP on the DAX client's port, with the client's connections open: a
    write through DAX is what an HTTP read then sees and the other way round; reads through
    DAX are served from the item cache (a change behind the proxy's back stays unseen until
    a ConsistentRead), as HTTP reads are."""
    key = {"pk": {"S": "shared"}}
    http = _boto(dax.url)
    client.put_item(TableName="dax_hash_s", Item={**key, "v": {"S": "from dax"}})
    assert http.get_item(TableName="dax_hash_s", Key=key)["Item"]["v"] == {"S": "from dax"}
    http.put_item(TableName="dax_hash_s", Item={**key, "v": {"S": "from http"}})
    assert client.get_item(TableName="dax_hash_s", Key=key)["Item"]["v"] == {"S": "from http"}
    client.put_item(TableName="dax_hash_s", Item={**key, "v": {"S": "from dax"}})
    _boto(endpoints.upstream).put_item(TableName="dax_hash_s", Item={**key, "v": {"S": "behind"}})
    cached = client.get_item(TableName="dax_hash_s", Key=key)
    assert cached["Item"]["v"] == {"S": "from dax"}  # a hit: the cache's copy
    fresh = client.get_item(TableName="dax_hash_s", Key=key, ConsistentRead=True)
    assert fresh["Item"]["v"] == {"S": "behind"}


def _requests(proxy: ProxyProcess) -> dict[tuple[str, str], float]:
    """daxproxy_requests_total by protocol and operation."""
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.labels["protocol"], s.labels["operation"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "daxproxy_requests_total"
    }


def test_dax_calls_are_counted_under_their_protocol(dax: ProxyProcess, client: Any) -> None:
    key = {"pk": {"S": "counted"}}
    before = _requests(dax)
    client.put_item(TableName="dax_hash_s", Item=key)
    client.get_item(TableName="dax_hash_s", Key=key)
    _boto(dax.url).get_item(TableName="dax_hash_s", Key=key)
    after = _requests(dax)
    added = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
    assert added == {("dax", "PutItem"): 1, ("dax", "GetItem"): 1, ("http", "GetItem"): 1}


def test_unknown_table_is_resource_not_found(client: Any) -> None:
    with pytest.raises(ClientError) as caught:
        client.get_item(TableName="dax_no_such_table", Key={"pk": {"S": "x"}})
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_projection_dynamodb_refuses_is_refused_in_its_words(client: Any) -> None:
    """Asked of DynamoDB cut before the index (``l``), these would pass: checked first."""
    key = {"pk": {"S": "x"}}
    for projection, words in (("l[0], l[0]", "overlap"), ("l.x, l[0]", "conflict")):
        with pytest.raises(ClientError) as caught:
            client.get_item(TableName="dax_hash_s", Key=key, ProjectionExpression=projection)
        error = caught.value.response["Error"]
        assert error["Code"] == "ValidationException"
        assert f"Two document paths {words} with each other" in error["Message"]
    # A step into an index's key attribute (dax_gsi's g): the proxy learns the indexes from
    # DescribeTable.
    gsi_key = {"pk": {"S": "x"}, "sk": {"N": "1"}}
    for call in (
        lambda: client.get_item(TableName="dax_gsi", Key=gsi_key, ProjectionExpression="g[0]"),
        lambda: client.scan(TableName="dax_gsi", ProjectionExpression="i, g[0].x"),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response["Error"]
        assert error["Code"] == "ValidationException"
        assert error["Message"].endswith("are not allowed: IndexKey: g")


def test_the_resource_api_puts_and_gets(dax: ProxyProcess) -> None:
    resource = AmazonDaxClient.resource(
        endpoint_url=f"dax://127.0.0.1:{dax.port}",
        region_name=REGION,
        aws_access_key_id="AKIDDAX",
        aws_secret_access_key="secret",
    )
    try:
        table = resource.Table("dax_s_n")
        table.put_item(Item={"pk": "res", "sk": -1, "b": base64.b64decode("AQ=="), "s": {"x"}})
        got = table.get_item(Key={"pk": "res", "sk": -1})["Item"]
        assert got["s"] == {"x"}
        assert got["sk"] == -1
    finally:
        resource.meta.client.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"gJ7yne5X",  # DAX's first byte, then not its preamble
        b"gJ7yne5G\xff\xff\xff",  # the magic, then not CBOR
        PREAMBLE + b"\x01\x1a\x00\x00\x30\x39",  # an unknown method id
        PREAMBLE + b"\x01\x1a\x0f\xb0\xcc\x6a" + b"\x81" * 200,  # nesting past the cap
    ],
)
def test_broken_connections_close_and_the_server_serves_on(
    dax: ProxyProcess, client: Any, garbage: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", dax.port), timeout=10) as raw:
        raw.sendall(garbage)
        assert raw.recv(100) == b""  # closed, nothing answered
    assert client.get_item(TableName="dax_hash_s", Key={"pk": {"S": "absent"}}) == {}
    assert "Item" not in _boto(dax.url).get_item(
        TableName="dax_hash_s", Key={"pk": {"S": "absent"}}
    )


def test_a_client_that_outlives_a_restart_reads_correctly(
    dax: ProxyProcess, endpoints: Endpoints, tmp_path: Path
) -> None:
    """The attribute-list ids are in the data directory: after a restart, a list named
    first by another client gets a new id, not one the long-lived client knows for
    another list (which it would use to misread the item)."""
    old_key, new_key = {"pk": {"S": "before restart"}}, {"pk": {"S": "after restart"}}
    old_item = {**old_key, "x": {"S": "1"}, "y": {"S": "2"}}
    new_item = {**new_key, "a": {"S": "3"}, "b": {"S": "4"}}
    data_dir = str(tmp_path / "data")
    first = _proxy(endpoints.upstream, "--data-dir", data_dir)
    with _dax_client(first.port) as long_lived:
        long_lived.put_item(TableName="dax_hash_s", Item=old_item)
        assert long_lived.get_item(TableName="dax_hash_s", Key=old_key)["Item"] == old_item
        assert _stop(first) == 0
        second = _proxy(endpoints.upstream, "--data-dir", data_dir, port=first.port)
        try:
            with _dax_client(second.port) as fresh:
                fresh.put_item(TableName="dax_hash_s", Item=new_item)
            got = long_lived.get_item(TableName="dax_hash_s", Key=new_key)
            assert got["Item"] == new_item
            got = long_lived.get_item(TableName="dax_hash_s", Key=old_key)
            assert got["Item"] == old_item
        finally:
            _stop(second)


def _dax_socket(port: int) -> socket.socket:
    """A DAX connection that has had an answer (so the proxy holds it as DAX's)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(PREAMBLE + ENDPOINTS)
    assert raw.recv(4096)
    return raw


def _gauge(proxy: ProxyProcess) -> float:
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    (value,) = re.findall(r"^daxproxy_client_connections ([0-9.e+]+)$", text, re.MULTILINE)
    return float(value)


def test_dax_connections_count_in_the_cap_and_the_gauge(endpoints: Endpoints) -> None:
    proxy = _proxy(endpoints.upstream, "--max-client-connections", "3")
    try:
        first, second = _dax_socket(proxy.port), _dax_socket(proxy.port)
        assert _gauge(proxy) == 3  # the two DAX connections and the scrape's own
        third = _dax_socket(proxy.port)
        with (
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as fourth,
            contextlib.suppress(ConnectionResetError),  # past the cap: aborted...
        ):
            fourth.sendall(PREAMBLE + ENDPOINTS)
            assert fourth.recv(4096) == b""  # ...or closed, unanswered
        first.close()
        deadline = time.monotonic() + 10
        while True:  # the close reaches the proxy soon; a scrape before it is refused
            try:
                assert _gauge(proxy) == 3  # two DAX connections and the scrape
                break
            except OSError:
                assert time.monotonic() < deadline
        second.close()
        third.close()
    finally:
        _stop(proxy)


@pytest.mark.usefixtures("dax")  # its tables
def test_clients_connect_where_dax_endpoint_says(endpoints: Endpoints) -> None:
    """The client is given the proxy's port; the endpoints call names the forwarder's (a
    NAT's or a port map's stand-in), and the data calls go through it."""
    forwarder = TcpForwarder()
    proxy = _proxy(endpoints.upstream, "--dax-endpoint", f"127.0.0.1:{forwarder.port}")
    try:
        forwarder.start(proxy.port)
        key = {"pk": {"S": "through the forwarder"}}
        with _dax_client(proxy.port) as client:
            client.put_item(TableName="dax_hash_s", Item={**key, "v": {"S": "x"}})
            assert client.get_item(TableName="dax_hash_s", Key=key)["Item"]["v"] == {"S": "x"}
        assert forwarder.accepted >= 1
        assert _requests(proxy)["dax", "GetItem"] == 1
    finally:
        forwarder.close()
        _stop(proxy)


def test_idle_dax_connections_close_and_sigterm_drains_them(endpoints: Endpoints) -> None:
    proxy = _proxy(endpoints.upstream, "--client-idle-timeout-millis", "200")
    try:
        with _dax_socket(proxy.port) as idle:
            assert idle.recv(100) == b""  # closed by the proxy once idle
        kept = _dax_socket(proxy.port)
    finally:
        assert _stop(proxy) == 0
    with kept:
        assert kept.recv(100) == b""  # closed on SIGTERM; the process stopped cleanly


def test_conditions_updates_and_deletes_equal_moto(client: Any, direct: Any) -> None:
    table, key = "dax_s_n", {"pk": {"S": "writes"}, "sk": {"N": "-0.5"}}
    item = {**key, "name": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x"]}, "l": {"L": []}}
    _same(
        lambda c: c.put_item(
            TableName=table,
            Item=item,
            ConditionExpression="attribute_not_exists(pk)",
        ),
        client,
        direct,
    )
    for returns in ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"):
        _same(
            lambda c, returns=returns: c.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #n = :v, l = list_append(l, :l) ADD n :one "
                "DELETE tags :t REMOVE gone",
                ConditionExpression="#n <> :no AND size(l) < :ten",
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={
                    ":v": {"S": returns},
                    ":l": {"L": [{"N": "1"}]},
                    ":one": {"N": "1"},
                    ":t": {"SS": ["y"]},
                    ":no": {"S": "nobody"},
                    ":ten": {"N": "10"},
                },
                ReturnValues=returns,
            ),
            client,
            direct,
        )
    _same(lambda c: c.get_item(TableName=table, Key=key), client, direct)
    _same(
        lambda c: c.delete_item(
            TableName=table,
            Key=key,
            ConditionExpression="n > :zero",
            ExpressionAttributeValues={":zero": {"N": "0"}},
            ReturnValues="ALL_OLD",
        ),
        client,
        direct,
    )
    assert _same(lambda c: c.get_item(TableName=table, Key=key), client, direct) == {}


def test_a_failed_condition_is_conditional_check_failed(client: Any, direct: Any) -> None:
    key = {"pk": {"S": "guarded"}}
    _same(lambda c: c.put_item(TableName="dax_hash_s", Item=key), client, direct)
    errors = []
    for c in (client, direct):
        with pytest.raises(ClientError) as caught:
            c.put_item(
                TableName="dax_hash_s", Item=key, ConditionExpression="attribute_not_exists(pk)"
            )
        errors.append(caught.value.response["Error"])
    assert errors[0] == errors[1]
    assert errors[0]["Code"] == "ConditionalCheckFailedException"


def test_projections_equal_moto(client: Any, direct: Any) -> None:
    key = {"pk": {"S": "projected"}, "sk": {"N": "1"}}
    item = {**key, **EVERY_TYPE}
    _same(lambda c: c.put_item(TableName="dax_s_n", Item=item), client, direct)
    for projection in ("s", "pk, m.inner.deep, m.n, absent, m.absent", "#n, sk", "l, ss"):
        names = {"#n": "n"} if "#n" in projection else {}
        _same(
            lambda c, projection=projection, names=names: c.get_item(
                TableName="dax_s_n",
                Key=key,
                ProjectionExpression=projection,
                **({"ExpressionAttributeNames": names} if names else {}),
            ),
            client,
            direct,
        )


LISTED = {
    "l": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"x": {"S": "x1"}}}, {"L": [{"S": "d"}]}]},
    "m": {"M": {"l": {"L": [{"M": {"x": {"N": "0"}, "y": {"N": "1"}}}, {"M": {"y": {"N": "2"}}}]}}},
}
# One index into each list: moto keeps only the last of several ("l[1], l[3]" gives [d]),
# answers nothing for a list in a list ("l[3][0]"), and ignores TransactGetItems'
# projections; DynamoDB packs a list's selected elements in index order, as
# tests/unit/dax/test_list_paths.py pins.
LIST_PROJECTIONS = ["l[3]", "l[1], m.l[1].y", "m.l[0].x, l[9], #s", "l[2].x, m.l[5]"]


def _listed(projection: str) -> dict[str, Any]:
    request: dict[str, Any] = {"ProjectionExpression": projection}
    if "#s" in projection:
        request["ExpressionAttributeNames"] = {"#s": "s"}
    return request


@pytest.mark.parametrize("projection", LIST_PROJECTIONS)
def test_list_index_projections_equal_moto(client: Any, direct: Any, projection: str) -> None:
    keys = [{"pk": {"S": "listed"}, "sk": {"N": str(i)}} for i in range(2)]
    for c in (client, direct):
        for i, key in enumerate(keys):
            c.put_item(TableName="dax_s_n", Item={**key, **LISTED, "s": {"S": str(i)}})
    asked = _listed(projection)
    for key in keys:
        _same(lambda c, key=key: c.get_item(TableName="dax_s_n", Key=key, **asked), client, direct)
    condition = {
        "KeyConditionExpression": "pk = :p",
        "FilterExpression": "sk > :zero",  # on sk, which the projection leaves out
        "ExpressionAttributeValues": {":p": {"S": "listed"}, ":zero": {"N": "0"}},
    }
    _same(lambda c: c.query(TableName="dax_s_n", **condition, **asked), client, direct)
    scan = {"FilterExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "listed"}}}
    scanned = [c.scan(TableName="dax_s_n", **scan, **asked) for c in (client, direct)]
    # Not ScannedCount: other tests write to this table through one side only.
    assert [_numeric(a["Items"]) for a in scanned] == [_numeric(scanned[1]["Items"])] * 2
    batch = {"dax_s_n": {"Keys": keys, **asked}}
    ours = _sorted_responses(client.batch_get_item(RequestItems=batch))
    theirs = _sorted_responses(direct.batch_get_item(RequestItems=batch))
    assert _numeric(ours) == _numeric(theirs)
    gets = [{"Get": {"TableName": "dax_s_n", "Key": key, **asked}} for key in keys]
    ours = client.transact_get_items(TransactItems=gets)["Responses"]
    theirs = [direct.get_item(TableName="dax_s_n", Key=key, **asked)["Item"] for key in keys]
    assert _numeric(ours) == _numeric([{"Item": item} for item in theirs])


def _pages(call: Callable[..., Any], target: Any, **request: Any) -> list[Any]:
    """Every page of a Query or Scan, following LastEvaluatedKey."""
    pages = []
    while True:
        page = call(target, **request)
        page.pop("ResponseMetadata", None)
        page.pop("ConsumedCapacity", None)
        pages.append(page)
        if "LastEvaluatedKey" not in page:
            return pages
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


@pytest.fixture(scope="module")
def query_items(client: Any, direct: Any) -> None:
    for i, sk in enumerate(["-10", "-2.5", "0", "0.001", "3", "1E+5", "123456789.123"]):
        item = {
            "pk": {"S": "q"},
            "sk": {"N": sk},
            "g": {"S": "even" if i % 2 == 0 else "odd"},
            "i": {"N": str(i)},
            "m": {"M": {"x": {"N": str(i)}}},
        }
        for c in (client, direct):
            c.put_item(TableName="dax_gsi", Item=item)


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "q"}}},
    {
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {":p": {"S": "q"}, ":lo": {"N": "-3"}, ":hi": {"N": "5"}},
        "ScanIndexForward": False,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "FilterExpression": "i > :two",
        "ExpressionAttributeValues": {":p": {"S": "q"}, ":two": {"N": "2"}},
        "Limit": 2,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "ProjectionExpression": "#i, m.x",
        "ExpressionAttributeNames": {"#i": "i"},
        "ExpressionAttributeValues": {":p": {"S": "q"}},
        "Limit": 3,
    },
    {
        "KeyConditionExpression": "pk = :p",
        "Select": "COUNT",
        "ExpressionAttributeValues": {":p": {"S": "q"}},
    },
    {
        "IndexName": "by_g",
        "KeyConditionExpression": "g = :g AND sk > :lo",
        "ExpressionAttributeValues": {":g": {"S": "even"}, ":lo": {"N": "-100"}},
        "Limit": 1,
    },
]


@pytest.mark.parametrize("request_", QUERIES)
def test_queries_page_by_page_equal_moto(
    client: Any, direct: Any, query_items: None, request_: dict[str, Any]
) -> None:
    ours = _pages(lambda c, **r: c.query(**r), client, TableName="dax_gsi", **request_)
    theirs = _pages(lambda c, **r: c.query(**r), direct, TableName="dax_gsi", **request_)
    assert _numeric(ours) == _numeric(theirs)
    assert len(ours) > 1 or "Limit" not in request_


SCANS: list[dict[str, Any]] = [
    {},
    {"Limit": 2},
    {"Segment": 0, "TotalSegments": 2},
    {"Segment": 1, "TotalSegments": 2},
    {"IndexName": "by_g", "Limit": 3},
    {"FilterExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "odd"}}},
]


@pytest.mark.parametrize("request_", SCANS)
def test_scans_page_by_page_equal_moto(
    client: Any, direct: Any, query_items: None, request_: dict[str, Any]
) -> None:
    ours = _pages(lambda c, **r: c.scan(**r), client, TableName="dax_gsi", **request_)
    theirs = _pages(lambda c, **r: c.scan(**r), direct, TableName="dax_gsi", **request_)
    assert _numeric(ours) == _numeric(theirs)


def _sorted_responses(answer: dict[str, Any]) -> dict[str, Any]:
    """Responses in key order: DynamoDB returns a batch's items in no particular order."""
    answer.pop("ResponseMetadata", None)
    answer.pop("ConsumedCapacity", None)
    for table, items in answer.get("Responses", {}).items():
        answer["Responses"][table] = sorted(items, key=repr)
    return answer


def test_batch_get_equals_moto(client: Any, direct: Any) -> None:
    hash_items = [
        {"pk": {"S": f"batch{i}"}, "v": {"N": str(i)}, "m": {"M": {"x": {"S": "y"}}}}
        for i in range(3)
    ]
    range_items = [
        {"pk": {"S": "batch"}, "sk": {"N": str(-i)}, "w": {"BOOL": True}} for i in range(3)
    ]
    for c in (client, direct):
        for item in hash_items:
            c.put_item(TableName="dax_hash_s", Item=item)
        for item in range_items:
            c.put_item(TableName="dax_s_n", Item=item)
    request = {
        "dax_hash_s": {
            "Keys": [{"pk": item["pk"]} for item in hash_items] + [{"pk": {"S": "absent"}}],
            "ProjectionExpression": "#v, m.x",
            "ExpressionAttributeNames": {"#v": "v"},
        },
        "dax_s_n": {
            "Keys": [{"pk": i["pk"], "sk": i["sk"]} for i in range_items],
            "ConsistentRead": True,
        },
    }
    for _ in range(2):  # the second time from the cache
        ours = _sorted_responses(client.batch_get_item(RequestItems=request))
        theirs = _sorted_responses(direct.batch_get_item(RequestItems=request))
        assert _numeric(ours) == _numeric(theirs)


def test_batch_write_equals_moto(client: Any, direct: Any) -> None:
    puts = [{"pk": {"S": f"bw{i}"}, "v": {"NS": [str(i), "-1"]}} for i in range(3)]
    for c in (client, direct):
        c.put_item(TableName="dax_hash_s", Item={"pk": {"S": "bw-gone"}})
    request = {
        "dax_hash_s": [{"PutRequest": {"Item": item}} for item in puts]
        + [{"DeleteRequest": {"Key": {"pk": {"S": "bw-gone"}}}}],
        "dax_s_n": [{"PutRequest": {"Item": {"pk": {"S": "bw"}, "sk": {"N": "-7.25"}}}}],
    }
    _same(lambda c: c.batch_write_item(RequestItems=copy.deepcopy(request)), client, direct)
    for key in [{"pk": item["pk"]} for item in puts] + [{"pk": {"S": "bw-gone"}}]:
        _same(lambda c, key=key: c.get_item(TableName="dax_hash_s", Key=key), client, direct)
    key = {"pk": {"S": "bw"}, "sk": {"N": "-7.25"}}
    _same(lambda c: c.get_item(TableName="dax_s_n", Key=key), client, direct)


def test_transactions_equal_moto(client: Any, direct: Any) -> None:
    keep, gone = {"pk": {"S": "tx-keep"}}, {"pk": {"S": "tx-gone"}}
    for c in (client, direct):
        c.put_item(TableName="dax_hash_s", Item={**keep, "n": {"N": "1"}})
        c.put_item(TableName="dax_hash_s", Item={**gone, "n": {"N": "1"}})
    ranged = {"pk": {"S": "tx"}, "sk": {"N": "-1.5"}}
    writes = [
        {
            "Put": {
                "TableName": "dax_s_n",
                "Item": {**ranged, "m": {"M": {"a": {"SS": ["x"]}}}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "Update": {
                "TableName": "dax_hash_s",
                "Key": keep,
                "UpdateExpression": "ADD n :one SET #s = :s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":s": {"S": "done"}},
            }
        },
        {"Delete": {"TableName": "dax_hash_s", "Key": gone}},
        {
            "ConditionCheck": {
                "TableName": "dax_hash_s",
                "Key": {"pk": {"S": "tx-absent"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]
    _same(lambda c: c.transact_write_items(TransactItems=copy.deepcopy(writes)), client, direct)
    gets = [
        {"Get": {"TableName": "dax_hash_s", "Key": keep}},
        {"Get": {"TableName": "dax_hash_s", "Key": gone}},
        {
            "Get": {
                "TableName": "dax_s_n",
                "Key": ranged,
                # moto returns the key with any projection here; DynamoDB only what is asked.
                "ProjectionExpression": "m.a, sk, pk",
            }
        },
    ]
    _same(lambda c: c.transact_get_items(TransactItems=copy.deepcopy(gets)), client, direct)
    errors = []
    for c in (client, direct):
        with pytest.raises(ClientError) as caught:
            c.transact_write_items(TransactItems=copy.deepcopy(writes[:1]))
        errors.append(caught.value.response["Error"]["Code"])
    assert errors == ["TransactionCanceledException"] * 2


def test_every_worker_serves_dax_with_the_same_attribute_list_ids(
    dax: ProxyProcess, endpoints: Endpoints, tmp_path: Path
) -> None:
    """With workers, DAX clients' connections land on any worker (SO_REUSEPORT): each
    names new attribute lists, and every client reads every item right, each reconnecting
    after an error, so the workers gave every list the same id (the kernel's spread is not
    controlled here: with six clients reconnecting three times, some client talks to both
    workers in all but a vanishing share of runs)."""
    proxy = _proxy(endpoints.upstream, "--workers", "2", "--data-dir", str(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while "with 2 workers" not in proxy.log():  # the supervisor's line: both listen
            assert time.monotonic() < deadline, "the workers did not all start"
            time.sleep(0.02)
        items = [
            {"pk": {"S": f"worker-{i}"}, f"only_{i}": {"S": str(i)}, "n": {"N": str(i)}}
            for i in range(6)
        ]
        clients = [_dax_client(proxy.port) for _ in items]
        try:
            for client, item in zip(clients, items, strict=True):
                client.put_item(TableName="dax_hash_s", Item=item)
            for _ in range(3):
                for client in clients:
                    for item in items:
                        got = client.get_item(TableName="dax_hash_s", Key={"pk": item["pk"]})
                        assert got["Item"] == item
                    # An error reply makes the client drop its sockets and connect again,
                    # to whichever worker the kernel picks.
                    with pytest.raises(ClientError):
                        client.get_item(TableName="dax_no_such_table", Key={"pk": {"S": "x"}})
        finally:
            for client in clients:
                client.close()
        assert "Item" in _boto(proxy.url).get_item(
            TableName="dax_hash_s", Key={"pk": items[0]["pk"]}
        )
    finally:
        assert _stop(proxy) == 0


def test_daxs_on_the_https_port_with_the_same_certificate(
    dax: ProxyProcess,
    endpoints: Endpoints,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With TLS settings, ``daxs://`` reaches the proxy on its HTTPS port: the client
    checks the certificate against its trust store (here a throwaway CA's, through
    SSL_CERT_FILE, which the client's default context reads) and the host name."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    proxy = ProxyProcess(
        "--upstream",
        endpoints.upstream,
        "--tls-cert-file",
        str(tmp_path / "cert.pem"),
        "--tls-key-file",
        str(tmp_path / "key.pem"),
        ca_file=str(tmp_path / "ca.pem"),
    )
    proxy.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    try:
        item = {"pk": {"S": "over tls"}, "v": {"SS": ["x"]}}
        with AmazonDaxClient(
            endpoint_url=f"daxs://127.0.0.1:{proxy.port}",
            region_name=REGION,
            aws_access_key_id="AKIDDAX",
            aws_secret_access_key="secret",
        ) as secure:
            secure.put_item(TableName="dax_hash_s", Item=item)
            assert secure.get_item(TableName="dax_hash_s", Key={"pk": item["pk"]})["Item"] == item
    finally:
        _stop(proxy)
