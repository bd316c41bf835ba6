"""Verifying DAX's authorizeConnection: the SigV4 signature a DAX client sends on each
connection, with no I/O.

A DAX client does not sign its requests. It signs a fake request once per connection (and
again every 150 s) and sends the access key id, the hex signature and its string to sign
(``amazondax/SigV4Gen.py``, ``Tube._auth``). The fake request is ``POST /`` with no query,
the headers ``host:dax.amazonaws.com`` and ``x-amz-date``, signed headers
``host;x-amz-date`` and the hash of an empty payload; its scope is
``<YYYYMMDD>/<region>/dax/aws4_request``. A session token travels beside it, unsigned.

:func:`verify` returns the access key id, or raises the error HTTP's check
(:mod:`daxproxy.core.sigv4_verify`) raises for the same fault, with its words. The string
to sign is not trusted: each of its four lines is read and checked, and the signature is
checked over the string the server rebuilds from what it read, so a string to sign
captured from another signed request (an HTTP DynamoDB call, another service) cannot be
replayed here. In order:

1. not UTF-8, not four lines, or an algorithm other than AWS4-HMAC-SHA256:
   IncompleteSignature;
2. a signing time not in ISO-8601 basic format: IncompleteSignature; further than the clock
   skew from ``now``: InvalidSignature;
3. a scope without four parts: IncompleteSignature; for another region, a service other
   than ``dax``, another day than the signing time's, another terminator: InvalidSignature;
4. a canonical-request hash other than the fake request's at that time: InvalidSignature;
5. an access key id ``secret_of`` does not know: UnrecognizedClient;
6. a signature other than the HMAC of the rebuilt string with the key's signing key:
   InvalidSignature, compared in constant time;
7. a session token: UnrecognizedClient, since the proxy knows long-term keys only.

The secret never leaves this module except into :func:`daxproxy.core.sigv4.signature_of`;
no message carries it or the signature.
"""

from __future__ import annotations

import hashlib
import hmac

from daxproxy.core.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    UnrecognizedClientException,
)
from daxproxy.core.sigv4 import ALGORITHM, signature_of
from daxproxy.core.sigv4_verify import (
    BAD_TOKEN,
    MISMATCH,
    UNKNOWN_KEY,
    SecretOf,
    check_scope,
    check_skew,
    timestamp,
)

SERVICE = "dax"
HOST = "dax.amazonaws.com"  # the clients' fake request's host (Tube.DAX_ADDR, less https://)
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()


def canonical_request(amz_date: str) -> str:
    """The canonical request of the clients' fake request signed at ``amz_date``."""
    return "\n".join(
        [
            "POST",
            "/",
            "",
            f"host:{HOST}\nx-amz-date:{amz_date}\n",
            "host;x-amz-date",
            _EMPTY_HASH,
        ]
    )


def canonical_hash(amz_date: str) -> str:
    """The SHA-256 (hex) of the fake request's canonical request signed at ``amz_date``."""
    return hashlib.sha256(canonical_request(amz_date).encode()).hexdigest()


def verify(
    *,
    key_id: str,
    signature: str,
    string_to_sign: bytes,
    token: str | None,
    region: str,
    secret_of: SecretOf,
    now: float,
    skew_seconds: float,
) -> str:
    """``key_id``, when its signature proves it; else the DynamoDB error, raised."""
    try:
        text = string_to_sign.decode("utf-8")
    except UnicodeDecodeError:
        raise IncompleteSignatureException("The string to sign is not UTF-8 text.") from None
    lines = text.split("\n")
    if len(lines) != 4:
        raise IncompleteSignatureException(
            f"The string to sign must have 4 lines (algorithm, date, scope, hash), "
            f"not {len(lines)}."
        )
    algorithm, amz_date, scope, hashed = lines
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now). "
        )
    # timestamp() forgives spaces around the date; the signature is checked over the
    # string rebuilt from what was read, so what was forgiven is never what was signed.
    stamp, signed_at = timestamp(amz_date, None)
    check_skew(stamp, signed_at, now, skew_seconds)
    parts = scope.split("/")
    if len(parts) != 4:
        raise IncompleteSignatureException(
            "The scope must have exactly 4 slash-delimited elements, "
            f"e.g. date/region/service/term, got '{scope}'"
        )
    check_scope(parts, stamp, region, SERVICE)
    if hashed != canonical_hash(stamp):
        raise InvalidSignatureException(
            "The string to sign is not that of DAX's authorizeConnection request: "
            "its canonical request hash differs."
        )
    secret = secret_of(key_id)
    if secret is None:
        raise UnrecognizedClientException(UNKNOWN_KEY)
    # Over the string rebuilt from what was checked: the one signature_of signs.
    expected = signature_of(canonical_request(stamp), stamp, scope, secret)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidSignatureException(MISMATCH)
    if token is not None:
        raise UnrecognizedClientException(BAD_TOKEN)
    return key_id
