"""authorizeConnection's signature, verified against what the real Python DAX client sends.

Every accepted example is made by the client's own code (``amazondax.Tube``'s reauth, its
``SigV4Gen``) with a fixed clock, framed by the proxy's own session reader; each refusal
is one fault in such an example, and names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
from typing import Any

import pytest
from amazondax.Tube import Tube
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from daxproxy.core import sigv4_dax
from daxproxy.core.errors import (
    DynamoDBError,
    IncompleteSignatureException,
    InvalidSignatureException,
    UnrecognizedClientException,
)
from daxproxy.core.sigv4 import signing_key
from daxproxy.dax import methods
from daxproxy.dax.session import Session

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
NOW = 1700000000.0  # 2023-11-14T22:13:20Z
SKEW = 300.0


class _Socket:
    """Enough of a socket for a Tube: it keeps what is sent."""

    family = socket.AF_INET

    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data


def client_auth(
    *, secret: str = SECRET, region: str = REGION, at: float = NOW, token: str | None = None
) -> dict[str, Any]:
    """The arguments of the authorizeConnection the real client sends at ``at``, as the
    proxy's session reader frames them."""
    credentials = Credentials(KEY, secret, token)
    sock = _Socket()
    tube = Tube(sock, None, lambda: credentials, region, clock=lambda: at)
    tube.reauth()
    tube.flush()
    [request] = Session(max_bytes=1 << 16).receive(bytes(sock.sent))
    assert request.method is methods.AUTHORIZE_CONNECTION
    key_id, signature, to_sign, sent_token, _agent = request.args
    return {
        "key_id": key_id,
        "signature": signature,
        "string_to_sign": to_sign,
        "token": sent_token,
    }


def verify(args: dict[str, Any], *, now: float = NOW, secrets: dict[str, str] | None = None) -> str:
    known = {KEY: SECRET} if secrets is None else secrets
    return sigv4_dax.verify(**args, region=REGION, secret_of=known.get, now=now, skew_seconds=SKEW)


def refusal(args: dict[str, Any], **options: Any) -> DynamoDBError:
    with pytest.raises(DynamoDBError) as caught:
        verify(args, **options)
    return caught.value


def signed(to_sign: str, secret: str = SECRET, date: str = "20231114", region: str = REGION) -> str:
    """A valid signature of any string to sign, made with the key's dax signing key."""
    key = signing_key(secret, date, region, "dax")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_clients_authorization_is_accepted() -> None:
    args = client_auth()
    # What the client sends, pinned (dax-protocol.md §1 recomputed these independently).
    assert args["string_to_sign"].startswith(
        b"AWS4-HMAC-SHA256\n20231114T221320Z\n20231114/us-east-1/dax/aws4_request\nf8c9bac8"
    )
    assert args["signature"].startswith("b0872dd4")
    assert args["token"] is None
    assert verify(args) == KEY


def test_the_canonical_hash_is_the_one_the_client_signs() -> None:
    to_sign = client_auth()["string_to_sign"].decode()
    assert to_sign.split("\n")[3] == sigv4_dax.canonical_hash("20231114T221320Z")


def test_a_wrong_secret_is_refused() -> None:
    error = refusal(client_auth(secret="not-the-secret"))
    assert isinstance(error, InvalidSignatureException)
    assert error.message.startswith("The request signature we calculated does not match")


def test_an_unknown_key_is_refused() -> None:
    error = refusal(client_auth(), secrets={"AKIDOTHER": SECRET})
    assert isinstance(error, UnrecognizedClientException)
    assert error.message == "The security token included in the request is invalid."


def test_another_region_is_refused() -> None:
    error = refusal(client_auth(region="eu-west-1"))
    assert isinstance(error, InvalidSignatureException)
    assert "scoped to a valid region, not 'eu-west-1'" in error.message


def test_a_dynamodb_request_signature_cannot_be_replayed_as_an_authorization() -> None:
    """What a signed HTTP DynamoDB call carries: the scope names the service dynamodb."""
    request = AWSRequest(method="POST", url="https://dynamodb.us-east-1.amazonaws.com/", data=b"{}")
    request.context["timestamp"] = "20231114T221320Z"
    request.headers["X-Amz-Date"] = "20231114T221320Z"
    signer = SigV4Auth(Credentials(KEY, SECRET), "dynamodb", REGION)
    to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    args = {
        "key_id": KEY,
        "signature": signer.signature(to_sign, request),
        "string_to_sign": to_sign.encode(),
        "token": None,
    }
    error = refusal(args)
    assert isinstance(error, InvalidSignatureException)
    assert "scoped to correct service: 'dax'" in error.message


def test_another_request_signed_for_dax_is_refused_on_its_canonical_hash() -> None:
    """A string to sign of the right scope and time but of some other request."""
    other = hashlib.sha256(b"POST\n/other\n\n...").hexdigest()
    to_sign = f"AWS4-HMAC-SHA256\n20231114T221320Z\n20231114/{REGION}/dax/aws4_request\n{other}"
    args = {
        "key_id": KEY,
        "signature": signed(to_sign),
        "string_to_sign": to_sign.encode(),
        "token": None,
    }
    error = refusal(args)
    assert isinstance(error, InvalidSignatureException)
    assert "canonical request hash differs" in error.message


def test_a_tampered_canonical_hash_is_refused() -> None:
    args = client_auth()
    to_sign = args["string_to_sign"]
    args["string_to_sign"] = to_sign[:-1] + (b"0" if to_sign[-1:] != b"0" else b"1")
    error = refusal(args)
    assert "canonical request hash differs" in error.message


@pytest.mark.parametrize(
    ("at", "words"),
    [
        (NOW - SKEW - 1, "Signature expired: 20231114T220819Z is now earlier than"),
        (NOW + SKEW + 1, "Signature not yet current: 20231114T221821Z is still later than"),
    ],
)
def test_a_date_outside_the_clock_skew_is_refused(at: float, words: str) -> None:
    error = refusal(client_auth(at=at))
    assert isinstance(error, InvalidSignatureException)
    assert error.message.startswith(words)


@pytest.mark.parametrize("at", [NOW - SKEW, NOW + SKEW])
def test_a_date_at_the_edge_of_the_clock_skew_is_accepted(at: float) -> None:
    assert verify(client_auth(at=at)) == KEY


def test_a_scope_for_another_day_is_refused() -> None:
    canonical = sigv4_dax.canonical_hash("20231114T221320Z")
    to_sign = f"AWS4-HMAC-SHA256\n20231114T221320Z\n20231113/{REGION}/dax/aws4_request\n{canonical}"
    args = {
        "key_id": KEY,
        "signature": signed(to_sign, date="20231113"),
        "string_to_sign": to_sign.encode(),
        "token": None,
    }
    error = refusal(args)
    assert isinstance(error, InvalidSignatureException)
    assert "Date in Credential scope does not match" in error.message


def test_a_session_token_is_refused() -> None:
    args = client_auth(token="FwoGZXIvYXdzEXAMPLETOKEN")
    assert args["token"] == "FwoGZXIvYXdzEXAMPLETOKEN"  # sent beside, not signed
    error = refusal(args)
    assert isinstance(error, UnrecognizedClientException)
    assert error.message == "The security token included in the request is invalid"


def _replace_line(index: int, line: bytes) -> dict[str, Any]:
    args = client_auth()
    lines = args["string_to_sign"].split(b"\n")
    lines[index] = line
    args["string_to_sign"] = b"\n".join(lines)
    return args


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({**client_auth(), "string_to_sign": b"\xff\xfe"}, "not UTF-8"),
        (
            {**client_auth(), "string_to_sign": client_auth()["string_to_sign"] + b"\n"},
            "must have 4 lines (algorithm, date, scope, hash), not 5",
        ),
        ({**client_auth(), "string_to_sign": b"AWS4-HMAC-SHA256"}, "not 1"),
        (_replace_line(0, b"AWS4-HMAC-SHA1"), "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1'"),
        (_replace_line(1, b"2023-11-14T22:13:20Z"), "Date must be in ISO-8601 'basic format'"),
        (_replace_line(1, b"20231399T221320Z"), "Date must be in ISO-8601 'basic format'"),
        (_replace_line(2, b"20231114/us-east-1/dax"), "exactly 4 slash-delimited elements"),
    ],
)
def test_a_malformed_string_to_sign_is_refused(args: dict[str, Any], words: str) -> None:
    error = refusal(args)
    assert isinstance(error, IncompleteSignatureException)
    assert words in error.message


def test_no_message_carries_the_secret_or_the_signature() -> None:
    for args in (client_auth(secret="wrong"), client_auth(token="t"), client_auth(region="x")):
        message = refusal(args).message
        assert SECRET not in message and args["signature"] not in message


_LINES = st.sampled_from(
    [
        "AWS4-HMAC-SHA256",
        "20231114T221320Z",
        "20231114/us-east-1/dax/aws4_request",
        sigv4_dax.canonical_hash("20231114T221320Z"),
        "",
        "/",
        "20231114/us-east-1/dax",
    ]
)


@given(
    key_id=st.text(max_size=30),
    signature=st.text(max_size=70),
    to_sign=st.one_of(
        st.binary(max_size=200),
        st.lists(st.one_of(_LINES, st.text(max_size=40)), max_size=6).map(
            lambda lines: "\n".join(lines).encode()
        ),
    ),
    token=st.one_of(st.none(), st.text(max_size=10)),
)
def test_any_arguments_are_accepted_or_refused_with_dynamodbs_error(
    key_id: str, signature: str, to_sign: bytes, token: str | None
) -> None:
    args = {"key_id": key_id, "signature": signature, "string_to_sign": to_sign, "token": token}
    with contextlib.suppress(DynamoDBError):
        verify(args, secrets={key_id: SECRET})
