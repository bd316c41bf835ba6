"""Requests as the JavaScript DAX client (``@amazon-dax-sdk/client-dax`` 3.1.0) writes them.

Each hex string is what the client wrote on its socket (recorded from ``net.Socket.write``
against the proxy), for the table ``t1`` (``pk`` S, ``sk`` N). Its ways differ from the
Python client's: an empty option map is ``bf ff``, not null; no ExpressionAttributeNames
or Values beside the compiled expressions, and ConditionExpression once (the Python client
writes key 4 twice); a decimal that a float64 spells exactly is a float64, a big integer a
bignum; ConsistentRead and ScanIndexForward of a Query are ints; the session token of
authorizeConnection is null. The integration test ``test_dax_js_client.py`` runs the client
itself.
"""

from __future__ import annotations

from typing import Any

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, methods, queries
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Session

SCHEMA = KeySchema("pk", "S", "sk", "N")
PREAMBLE = (
    "674a37796e65354700502536456a0eb2d554ee6315ed0097fe77a169557365724167656e7473"
    "4461784a535633436c69656e742d332e312e3000"
)
# authorizeConnection (no reply) and the endpoints call, written together.
AUTHORIZE_AND_ENDPOINTS = (
    "011a58c2336b64414b494478403462396533353930303431393432353333326365303664656532653962"
    "37626235633930343963373039666235623166326532653836373730366638623433305886415753342d"
    "484d41432d5348413235360a3230323631323036543232323033335a0a32303236313230362f75732d65"
    "6173742d312f6461782f617773345f726571756573740a62303136653164633566666338396665663038"
    "326462303934633839333365393032633139663432623637666266363764656333346466303765373762"
    "303663f6734461784a535633436c69656e742d332e312e30011a1b2bcf02"
)
# GetItem t1 {pk: "a", sk: -1.5}, no options.
GET = "011a0fb0cc6a4274314661613ed77fe0bfff"
# PutItem t1 {pk: "a", sk: -1.5, big: 12345678901234567890, d: 1E+20, f: 3.14} with
# ConditionExpression attribute_exists(#p) (#p: pk) and ReturnValues ALL_OLD; the values
# payload's attribute-list id (its first byte, 0x15 here) is the proxy's for [big, d, f].
PUT = (
    "013a7d8e7e564274314661613ed77fe0581815c248ab54a98ceb1f0ad2c4821401fb40091eb851eb851f"
    "bf0702044a8301820b821262706b80ff"
)
# Query t1 pk = :p (:p "a"), ConsistentRead, ScanIndexForward false, Limit 2.
QUERY = "013a3781c2ae4274314f83018300821262706b821100816161bf02010e000d02ff"


def _requests(*hex_parts: str) -> list[Any]:
    return Session(1 << 20).receive(bytes.fromhex("".join(hex_parts)))


def test_the_preamble_and_authorize_connection_frame() -> None:
    session = Session(1 << 20)
    [auth, endpoints] = session.receive(bytes.fromhex(PREAMBLE + AUTHORIZE_AND_ENDPOINTS))
    assert session.preamble is not None
    assert session.preamble.user_agent == "DaxJSV3Client-3.1.0"
    assert auth.method == methods.AUTHORIZE_CONNECTION
    assert auth.args[0] == "AKID" and auth.args[3] is None  # no session token
    assert endpoints.method == methods.ENDPOINTS


def test_get_item_with_an_empty_option_map() -> None:
    [get] = _requests(PREAMBLE, GET)
    assert get.args[2] == {}
    payload, paths = calls.get_item_payload(get.args, SCHEMA)
    assert payload == {"TableName": "t1", "Key": {"pk": {"S": "a"}, "sk": {"N": "-1.5"}}}
    assert paths is None


def test_put_item_numbers_and_a_condition_without_names() -> None:
    lists = AttributeLists()
    list_id = lists.id_of(("big", "d", "f"))
    put_hex = PUT.replace("581815", f"5818{list_id:02x}", 1)
    [put] = _requests(PREAMBLE, put_hex)
    assert calls.put_item_payload(put.args, SCHEMA, lists) == {
        "TableName": "t1",
        "Item": {
            "pk": {"S": "a"},
            "sk": {"N": "-1.5"},
            "big": {"N": "12345678901234567890"},
            "d": {"N": "1E+20"},
            "f": {"N": "3.14"},
        },
        "ConditionExpression": "attribute_exists(#n0)",
        "ExpressionAttributeNames": {"#n0": "pk"},
        "ReturnValues": "ALL_OLD",
    }


def test_query_options_as_ints() -> None:
    [query] = _requests(PREAMBLE, QUERY)
    payload, paths = queries.query_payload(query.args, SCHEMA)
    assert payload == {
        "TableName": "t1",
        "KeyConditionExpression": "#n0 = :v0",
        "ExpressionAttributeNames": {"#n0": "pk"},
        "ExpressionAttributeValues": {":v0": {"S": "a"}},
        "ConsistentRead": True,
        "ScanIndexForward": False,
        "Limit": 2,
    }
    assert paths is None
