"""Framing a DAX connection: the bytes the real Python client sends, and bytes it never would."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from amazondax import Tube

from daxproxy.core.keys import KeySchema
from daxproxy.dax import calls, cbor, methods
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import MAGIC, ProtocolError, Session
from tests.unit.dax.real_client import CREDENTIALS, drive

SCHEMA = KeySchema("pk", "S", "sk", "N")


def _get_item_bytes() -> bytes:
    """Everything the client sends for one GetItem on a fresh connection."""
    lists = AttributeLists()
    replies = calls.key_schema_reply(SCHEMA) + calls.get_item_reply({}, SCHEMA, lists)
    result, sent = drive(
        lambda c: c.get_item(TableName="T", Key={"pk": {"S": "u1"}, "sk": {"N": "5"}}), replies
    )
    assert result == {}
    return sent


def _names(requests: list[Any]) -> list[str]:
    return [r.method.name for r in requests]


def test_the_client_opens_with_the_preamble_then_auth_in_front_of_its_first_request() -> None:
    sent = _get_item_bytes()
    assert sent.startswith(MAGIC + b"\x00")  # no layering
    # The session id: the client's random 128 bits as a byte string, shorter when its top
    # bytes are zero (a 16-byte one's header is 0x50).
    size = sent[len(MAGIC) + 1] - 0x40
    assert 0 < size <= 16
    session = Session(max_bytes=1 << 20)
    requests = session.receive(sent)
    assert session.preamble is not None
    assert session.preamble.user_agent == "DaxPythonClient-2.1.0"
    assert isinstance(session.preamble.session, bytes)
    assert len(session.preamble.session) == size
    assert _names(requests) == ["authorizeConnection", "defineKeySchema", "GetItem"]
    auth, schema, get = requests
    assert not auth.method.replies
    key_id, signature, to_sign, token, agent = auth.args
    assert key_id == CREDENTIALS.access_key
    assert len(signature) == 64
    assert isinstance(to_sign, bytes)
    assert to_sign.startswith(b"AWS4-HMAC-SHA256\n")
    assert b"/us-east-1/dax/aws4_request\n" in to_sign
    assert (token, agent) == (None, "DaxPythonClient-2.1.0")
    assert schema.args == (b"T",)
    # Python always sends ReturnConsumedCapacity NONE.
    assert get.args == (b"T", bytes.fromhex("627531c1800000"), {3: 0})


@pytest.mark.parametrize("bits", [(1 << 127) | 7, 0xFF << 112, 0xFF])
def test_a_session_id_shorter_than_16_bytes_is_read_too(bits: int) -> None:
    """The client's session id is its random 128 bits without their leading zero bytes."""
    with mock.patch.object(Tube._version_rand, "getrandbits", return_value=bits):
        sent = _get_item_bytes()
    session = Session(max_bytes=1 << 20)
    assert _names(session.receive(sent)) == ["authorizeConnection", "defineKeySchema", "GetItem"]
    assert session.preamble is not None
    assert int.from_bytes(session.preamble.session, "big") == bits


def test_bytes_one_at_a_time_give_the_same_requests() -> None:
    sent = _get_item_bytes()
    whole = Session(max_bytes=1 << 20).receive(sent)
    session = Session(max_bytes=1 << 20)
    pieces = []
    for i in range(len(sent)):
        pieces += session.receive(sent[i : i + 1])
    assert pieces == whole


def test_go_style_text_session_and_null_session_are_accepted() -> None:
    for session_id in ("1234567890", None):
        preamble = b"".join(
            cbor.dumps(x) for x in ("J7yne5G", 0, session_id, {"UserAgent": "x"}, 0)
        )
        session = Session(max_bytes=1024)
        assert session.receive(preamble + cbor.dumps(1) + cbor.dumps(methods.ENDPOINTS.id)) != []
        assert session.preamble is not None
        assert session.preamble.session == session_id


PREAMBLE = b"".join(cbor.dumps(x) for x in ("J7yne5G", 0, b"s", {"UserAgent": "x"}, 0))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"POST / HTTP/1.1\r\n", "preamble"),
        (b"gJ7yne5X", "preamble"),
        (cbor.dumps("J7yne5G") + cbor.dumps(1), "preamble"),  # layering must be 0
        (PREAMBLE[:-1] + cbor.dumps(5), "preamble"),
        (PREAMBLE + cbor.dumps(2) + cbor.dumps(methods.ENDPOINTS.id), "service"),
        (PREAMBLE + cbor.dumps(True) + cbor.dumps(methods.ENDPOINTS.id), "service"),
        (PREAMBLE + cbor.dumps(1) + cbor.dumps(785068263), "unknown method"),  # "methods"
        (PREAMBLE + cbor.dumps(1) + cbor.dumps("getItem"), "unknown method"),
        (PREAMBLE + cbor.dumps(1) + b"\xff", "not CBOR"),
        (PREAMBLE + cbor.dumps(1) + b"\x1c", "not CBOR"),  # reserved additional info
        (PREAMBLE + cbor.dumps(1) + cbor.dumps(methods.GET_ITEM.id) + b"\x81" * 100, "CBOR"),
    ],
)
def test_broken_framing_is_a_protocol_error(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        Session(max_bytes=1024).receive(data)


KEY_SCHEMA = PREAMBLE + cbor.dumps(1) + cbor.dumps(methods.DEFINE_KEY_SCHEMA.id)


@pytest.mark.parametrize(
    "header",
    [
        b"\x5b" + (1 << 63).to_bytes(8, "big"),  # a byte string of 2**63 bytes
        b"\x7a" + (1025).to_bytes(4, "big"),  # a text string just past the limit
        b"\x9b" + (1 << 40).to_bytes(8, "big"),  # an array of 2**40 items
        b"\xba" + (1 << 30).to_bytes(4, "big"),  # a map of 2**30 pairs
        b"\x82\x01\xd9\x0c\xf9\x5b" + (1 << 62).to_bytes(8, "big"),  # nested and tagged
    ],
)
def test_a_declared_length_past_the_limit_is_a_protocol_error_at_once(header: bytes) -> None:
    """Not a wait for bytes that could never be taken; nothing of that size is allocated."""
    with pytest.raises(ProtocolError, match="longer than 1024 bytes"):
        Session(max_bytes=1024).receive(KEY_SCHEMA + header)


def test_an_item_that_grows_past_the_limit_is_a_protocol_error() -> None:
    """An indefinite-length string declares no length: its chunks count as they come."""
    session = Session(max_bytes=1024)
    assert session.receive(KEY_SCHEMA + b"\x5f") == []
    chunk = cbor.dumps(b"x" * 100)
    for _ in range(10):
        assert session.receive(chunk) == []
    with pytest.raises(ProtocolError, match="longer than 1024 bytes"):
        session.receive(chunk)


def test_nesting_past_any_dax_request_is_a_protocol_error_before_it_ends() -> None:
    """Arrays in arrays, a byte at a time: the scan of the unfinished item stops them."""
    session = Session(max_bytes=1 << 20)
    assert session.receive(KEY_SCHEMA) == []
    with pytest.raises(ProtocolError, match="nested deeper"):
        for _ in range(1000):
            session.receive(b"\x81")


def test_a_request_cut_short_waits_for_the_rest() -> None:
    session = Session(max_bytes=1024)
    assert session.receive(PREAMBLE + cbor.dumps(1)) == []
    assert session.receive(cbor.dumps(methods.DEFINE_KEY_SCHEMA.id)) == []
    assert session.receive(b"\x41") == []  # a byte string of one byte, not yet sent
    [request] = session.receive(b"T")
    assert (request.method, request.args) == (methods.DEFINE_KEY_SCHEMA, (b"T",))
