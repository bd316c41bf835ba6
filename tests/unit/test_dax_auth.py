"""DAX connections with ``auth_file``: each connection's authorization (authorizeConnection
made by the real client's code, its life on an injected clock) and each call's grant, the
proxy's own check of the key, in front of a small DynamoDB."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from amazondax.DaxError import DaxServiceError

from daxproxy.core.access import Access, grant
from daxproxy.core.config import Settings
from daxproxy.dax import cbor, methods
from daxproxy.dax.session import Request
from daxproxy.service import dax_auth
from daxproxy.service.dax_calls import DaxService
from daxproxy.service.runtime import build_proxy
from tests.fakes import FakeTable, HeldDynamoDB
from tests.unit.dax.real_client import drive
from tests.unit.test_sigv4_dax import KEY, NOW, REGION, SECRET, client_auth

ENDPOINT = (b"\x7f\x00\x00\x01", 8111)
AUTH_REFUSED = [4, 23, 31, 33]
DENIED = [4, 37, 38, 42]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def service(fake: HeldDynamoDB, clock: Clock, *, auth: bool = True) -> DaxService:
    """The DAX service of a proxy whose auth file lets KEY read table A and nothing else."""
    access = Access(
        {KEY: grant(KEY, SECRET, ["A"], ["read"])},
        region=REGION,
        skew_seconds=300,
        clock=lambda: NOW,
    )
    proxy = build_proxy(Settings(), fake, access=access if auth else None)
    assert proxy.tables is not None
    return DaxService(proxy, proxy.tables, clock=clock)


def dynamodb() -> HeldDynamoDB:
    fake = HeldDynamoDB(FakeTable("A"), FakeTable("B"))
    fake.put_direct("A", {"pk": {"S": "k"}})
    fake.put_direct("B", {"pk": {"S": "k"}})
    return fake


def authorize(**how: Any) -> Request:
    args = client_auth(**how)
    return Request(
        methods.AUTHORIZE_CONNECTION,
        (args["key_id"], args["signature"], args["string_to_sign"], args["token"], "ua"),
    )


GET_A = Request(methods.GET_ITEM, (b"A", b"k", None))
GET_B = Request(methods.GET_ITEM, (b"B", b"k", None))
DELETE_A = Request(methods.DELETE_ITEM, (b"A", b"k", None))
SCHEMA_A = Request(methods.DEFINE_KEY_SCHEMA, (b"A",))
SCHEMA_B = Request(methods.DEFINE_KEY_SCHEMA, (b"B",))
SCHEMA_MISSING = Request(methods.DEFINE_KEY_SCHEMA, (b"Missing",))
ENDPOINTS = Request(methods.ENDPOINTS, ())
LIST_ID = Request(methods.DEFINE_ATTRIBUTE_LIST_ID, (["a", "b"],))


def error_of(reply: bytes | None) -> tuple[list[int], str, str]:
    """The codes, message and DynamoDB error code of an error reply."""
    assert reply is not None
    codes, message, (_request_id, code, status) = cbor.loads_all(reply)
    assert status == 400
    return codes, message, code


def succeeded(reply: bytes | None) -> bool:
    return reply is not None and reply[:1] == b"\x80"


async def test_an_authorized_connections_calls_are_answered() -> None:
    fake, clock = dynamodb(), Clock()
    connection = service(fake, clock).connection()
    assert await connection.answer(authorize(), ENDPOINT) is None  # no reply, as DAX
    for request in (GET_A, SCHEMA_A, ENDPOINTS, LIST_ID):
        assert succeeded(await connection.answer(request, ENDPOINT)), request.method.name
    assert fake.count("GetItem") == 1


@pytest.mark.parametrize("request_", [GET_A, SCHEMA_A, ENDPOINTS, LIST_ID])
async def test_no_call_is_answered_before_an_authorization(request_: Request) -> None:
    fake = dynamodb()
    connection = service(fake, Clock()).connection()
    codes, message, code = error_of(await connection.answer(request_, ENDPOINT))
    assert (codes, code) == (AUTH_REFUSED, "AccessDeniedException")
    assert message == dax_auth.NONE_YET
    assert fake.sent == []


async def test_a_wrong_secret_leaves_the_connection_unauthorized() -> None:
    fake = dynamodb()
    connection = service(fake, Clock()).connection()
    await connection.answer(authorize(secret="not-the-secret"), ENDPOINT)
    codes, message, code = error_of(await connection.answer(GET_A, ENDPOINT))
    assert (codes, code) == (AUTH_REFUSED, "AccessDeniedException")
    assert message.startswith(
        "authorizeConnection refused: The request signature we calculated does not match"
    )
    assert fake.sent == []


async def test_a_refused_reauthorization_ends_the_one_before() -> None:
    fake = dynamodb()
    connection = service(fake, Clock()).connection()
    await connection.answer(authorize(), ENDPOINT)
    assert succeeded(await connection.answer(GET_A, ENDPOINT))
    await connection.answer(authorize(region="eu-west-1"), ENDPOINT)
    codes, message, _ = error_of(await connection.answer(GET_A, ENDPOINT))
    assert codes == AUTH_REFUSED
    assert "scoped to a valid region, not 'eu-west-1'" in message


@pytest.mark.parametrize(
    "args",
    [
        (1, 2, 3, 4, 5),
        (KEY, "0" * 64, "text, not bytes", None, None),
        (KEY, "0" * 64, b"", 7, None),
        (None, None, None, None, None),
    ],
)
async def test_arguments_that_are_not_daxs_are_refused(args: tuple[Any, ...]) -> None:
    connection = service(dynamodb(), Clock()).connection()
    await connection.answer(Request(methods.AUTHORIZE_CONNECTION, args), ENDPOINT)
    codes, message, _ = error_of(await connection.answer(GET_A, ENDPOINT))
    assert codes == AUTH_REFUSED
    assert "arguments are not DAX's" in message


async def test_an_authorization_lasts_its_ttl_until_renewed() -> None:
    clock = Clock()
    connection = service(dynamodb(), clock).connection()
    await connection.answer(authorize(), ENDPOINT)
    clock.now = dax_auth.TTL_SECONDS - 0.001
    assert succeeded(await connection.answer(GET_A, ENDPOINT))
    clock.now = dax_auth.TTL_SECONDS
    codes, message, _ = error_of(await connection.answer(GET_A, ENDPOINT))
    assert (codes, message) == (AUTH_REFUSED, dax_auth.EXPIRED)
    await connection.answer(authorize(), ENDPOINT)  # the client's renewal, at any time
    assert succeeded(await connection.answer(GET_A, ENDPOINT))
    clock.now += dax_auth.TTL_SECONDS - 0.001  # counted from the renewal
    assert succeeded(await connection.answer(GET_A, ENDPOINT))


async def test_each_connection_has_its_own_authorization() -> None:
    dax = service(dynamodb(), Clock())
    first, second = dax.connection(), dax.connection()
    await first.answer(authorize(), ENDPOINT)
    assert succeeded(await first.answer(GET_A, ENDPOINT))
    assert error_of(await second.answer(GET_A, ENDPOINT))[0] == AUTH_REFUSED


async def test_a_call_the_keys_grant_does_not_allow_is_denied_by_the_proxys_check() -> None:
    fake = dynamodb()
    connection = service(fake, Clock()).connection()
    await connection.answer(authorize(), ENDPOINT)
    codes, message, code = error_of(await connection.answer(DELETE_A, ENDPOINT))
    assert (codes, code) == (DENIED, "AccessDeniedException")
    assert message == (
        f"User: {KEY} is not authorized to perform: dynamodb:DeleteItem on resource: "
        "arn:aws:dynamodb:us-east-1:*:table/A because no entry of the proxy's auth_file "
        "allows it"
    )
    assert fake.count("DeleteItem") == 0
    assert fake.item("A", pk="k") is not None


@pytest.mark.parametrize("request_", [GET_B, SCHEMA_B, SCHEMA_MISSING])
async def test_a_table_the_key_may_not_use_is_denied_before_it_is_looked_up(
    request_: Request,
) -> None:
    """Not even its key schema, nor whether it exists, is told."""
    fake = dynamodb()
    connection = service(fake, Clock()).connection()
    await connection.answer(authorize(), ENDPOINT)
    codes, message, code = error_of(await connection.answer(request_, ENDPOINT))
    assert (codes, code) == (DENIED, "AccessDeniedException")
    assert "is not authorized to perform: any data operation on resource" in message
    assert fake.sent == []  # no DescribeTable, no GetItem


async def test_without_an_auth_file_nothing_is_checked() -> None:
    fake = dynamodb()
    dax = service(fake, Clock(), auth=False)
    assert dax.connection() is dax  # nothing in front of the service
    assert succeeded(await dax.answer(GET_B, ENDPOINT))
    assert succeeded(await dax.answer(DELETE_A, ENDPOINT))


async def test_the_python_client_raises_the_refusal_as_an_auth_error() -> None:
    connection = service(dynamodb(), Clock()).connection()
    refusal = await connection.answer(SCHEMA_A, ENDPOINT)
    assert refusal is not None
    error, _ = drive(lambda c: c.get_item(TableName="A", Key={"pk": {"S": "k"}}), refusal)
    assert isinstance(error, DaxServiceError)
    assert error.response["Error"] == {
        "Code": "AccessDeniedException",
        "Message": dax_auth.NONE_YET,
    }
    assert error.auth_error  # what makes the client give up at once while it starts


async def test_a_refusal_is_logged_once_with_the_key_and_the_reason_but_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daxproxy")
    connection = service(dynamodb(), Clock()).connection()
    auth = authorize(secret="not-the-secret")
    await connection.answer(auth, ENDPOINT)
    for _ in range(3):
        await connection.answer(GET_A, ENDPOINT)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert text.startswith(f"DAX authorizeConnection refused for key {KEY}: The request signature")
    assert auth.args[1] not in text and SECRET not in text
    assert auth.args[2].decode() not in text


async def test_calls_refused_for_want_of_an_authorization_are_logged_once_a_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daxproxy")
    clock = Clock()
    dax = service(dynamodb(), clock)
    first, second = dax.connection(), dax.connection()
    for _ in range(3):
        await first.answer(GET_A, ENDPOINT)
    await second.answer(GET_A, ENDPOINT)
    await first.answer(authorize(), ENDPOINT)
    clock.now = dax_auth.TTL_SECONDS
    await first.answer(GET_A, ENDPOINT)
    await first.answer(GET_A, ENDPOINT)
    assert [r.getMessage().rpartition(": ")[2] for r in caplog.records] == [
        dax_auth.NONE_YET.rpartition(": ")[2],
        dax_auth.NONE_YET.rpartition(": ")[2],
        dax_auth.EXPIRED,
    ]
    assert {r.levelno for r in caplog.records} == {logging.INFO}


async def test_a_key_id_that_is_not_shaped_like_one_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daxproxy")
    connection = service(dynamodb(), Clock()).connection()
    _, signature, to_sign, token, agent = authorize().args
    forged = "AKID\nINFO daxproxy: all is well"
    await connection.answer(
        Request(methods.AUTHORIZE_CONNECTION, (forged, signature, to_sign, token, agent)),
        ENDPOINT,
    )
    [record] = caplog.records
    assert record.getMessage() == (
        "DAX authorizeConnection refused for key (malformed): "
        "The security token included in the request is invalid."
    )


def test_a_reason_is_logged_on_one_line_and_short() -> None:
    assert dax_auth._printable("scope 'eu\nwest'") == "scope 'eu\\nwest'"
    assert dax_auth._printable("x" * 1000) == "x" * 300 + "..."
