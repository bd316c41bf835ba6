"""Verifying a client request's AWS Signature Version 4, with no I/O.

:func:`verify` takes a request as it arrived (method, raw path and query, headers, body
bytes as sent) and returns the access key id that signed it, or raises the error DynamoDB
gives, with DynamoDB's words, checked in DynamoDB's order (dynalite's index.js records it):

1. no ``Authorization`` header, or one not starting ``AWS4-``: MissingAuthenticationToken;
2. ``Credential``, ``SignedHeaders`` or ``Signature`` missing, no ``X-Amz-Date`` (or
   ``Date``) header, a date not in ISO-8601 basic format, an unknown algorithm or a
   credential without five parts: IncompleteSignature;
3. a date further than the clock skew from ``now`` ("Signature expired", "Signature not yet
   current"), ``host`` not signed, a scope for another region, service, date or terminator:
   InvalidSignature;
4. an access key id ``secret_of`` does not know: UnrecognizedClient;
5. a signature that does not match the canonical request rebuilt from what arrived (the
   signed headers as received, the body's SHA-256; an ``x-amz-content-sha256`` header must
   equal it): InvalidSignature, compared in constant time;
6. a session token: UnrecognizedClient, since the proxy knows long-term keys only.

Presigned (query-string) signatures are not accepted. The secret never leaves this module
except into :func:`daxproxy.core.sigv4.signature_of`; no message carries it.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from daxproxy.core.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from daxproxy.core.sigv4 import ALGORITHM, SERVICE, signature_of

SecretOf = Callable[[str], str | None]

TERMINATOR = "aws4_request"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
# DynamoDB ends the unknown-key message with a period and the bad-token one without.
UNKNOWN_KEY = "The security token included in the request is invalid."
BAD_TOKEN = "The security token included in the request is invalid"
_BASIC_DATE = re.compile(r"\d{8}T\d{6}Z\Z")
_REQUIRED = ("Credential", "Signature", "SignedHeaders")


def verify(
    *,
    method: str,
    raw_path: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    region: str,
    secret_of: SecretOf,
    now: float,
    skew_seconds: float,
) -> str:
    """The access key id that signed this request; else the DynamoDB error, raised."""
    received: dict[str, list[str]] = {}
    for name, value in headers:
        received.setdefault(name.lower(), []).append(value)
    authorization = _first(received, "authorization")
    if authorization is None or not authorization.strip().startswith("AWS4-"):
        raise MissingAuthenticationTokenException("Request is missing Authentication Token")
    algorithm, params = _parse_authorization(authorization)

    amz_date = _first(received, "x-amz-date")
    http_date = _first(received, "date")
    problems = "".join(
        f"Authorization header requires '{name}' parameter. "
        for name in _REQUIRED
        if not params.get(name)
    )
    if amz_date is None and http_date is None:
        problems += (
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        )
    if problems:
        raise IncompleteSignatureException(f"{problems}Authorization={authorization}")

    stamp, signed_at = timestamp(amz_date, http_date)
    check_skew(stamp, signed_at, now, skew_seconds)

    signed_names = [n.strip().lower() for n in params["SignedHeaders"].split(";")]
    if "host" not in signed_names:
        raise InvalidSignatureException("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now). "
        )
    credential = params["Credential"].rstrip("/")
    parts = credential.split("/")
    if len(parts) != 5:
        raise IncompleteSignatureException(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'"
        )
    key_id, scope_date, scope_region, scope_service, terminator = parts
    check_scope(parts[1:], stamp, region)

    secret = secret_of(key_id)
    if secret is None:
        raise UnrecognizedClientException(UNKNOWN_KEY)

    payload_hash = hashlib.sha256(body).hexdigest()
    declared = _first(received, "x-amz-content-sha256")
    canonical = "\n".join(
        [
            method.upper(),
            _canonical_uri(raw_path),
            _canonical_query(raw_path),
            "".join(f"{n}:{_header_value(received.get(n, []))}\n" for n in signed_names),
            ";".join(signed_names),
            payload_hash,
        ]
    )
    scope = f"{scope_date}/{scope_region}/{scope_service}/{terminator}"
    expected = signature_of(canonical, stamp, scope, secret)
    matches = hmac.compare_digest(expected.encode(), params["Signature"].encode())
    if not matches or (declared is not None and declared.strip().lower() != payload_hash):
        raise InvalidSignatureException(MISMATCH)
    if "x-amz-security-token" in received:
        raise UnrecognizedClientException(BAD_TOKEN)
    return key_id


def _first(received: dict[str, list[str]], name: str) -> str | None:
    values = received.get(name)
    return values[0] if values else None


def _parse_authorization(authorization: str) -> tuple[str, dict[str, str]]:
    """The algorithm and the ``key=value`` parameters (spaces are not significant)."""
    algorithm, _, rest = authorization.strip().partition(" ")
    params: dict[str, str] = {}
    for part in rest.replace(" ", "").split(","):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise IncompleteSignatureException(
                f"'{part}' not a valid key=value pair (missing equal-sign) in "
                f"Authorization header: '{authorization}'."
            )
        params[name] = value
    return algorithm, params


def timestamp(amz_date: str | None, http_date: str | None) -> tuple[str, float]:
    """The signing time as ``YYYYMMDDTHHMMSSZ`` and as seconds since the epoch."""
    if amz_date is not None:
        raw = amz_date.strip()
        if _BASIC_DATE.match(raw):
            try:
                return raw, float(calendar.timegm(time.strptime(raw, "%Y%m%dT%H%M%SZ")))
            except ValueError:
                pass
    else:
        raw = (http_date or "").strip()
        try:
            parsed = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
        else:
            return _format(parsed), parsed
    raise IncompleteSignatureException(
        f"Date must be in ISO-8601 'basic format'. Got '{raw}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _format(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def check_skew(stamp: str, signed_at: float, now: float, skew_seconds: float) -> None:
    minutes = f"{skew_seconds / 60:g} min."
    if signed_at < now - skew_seconds:
        raise InvalidSignatureException(
            f"Signature expired: {stamp} is now earlier than {_format(now - skew_seconds)} "
            f"({_format(now)} - {minutes})"
        )
    if signed_at > now + skew_seconds:
        raise InvalidSignatureException(
            f"Signature not yet current: {stamp} is still later than "
            f"{_format(now + skew_seconds)} ({_format(now)} + {minutes})"
        )


def check_scope(
    scope: list[str], stamp: str, expected_region: str, expected_service: str = SERVICE
) -> None:
    """The ``date/region/service/terminator`` scope of a signature made at ``stamp``."""
    date, region, service, terminator = scope
    problems = ""
    if region != expected_region:
        problems += f"Credential should be scoped to a valid region, not '{region}'. "
    if service != expected_service:
        problems += f"Credential should be scoped to correct service: '{expected_service}'. "
    if terminator != TERMINATOR:
        problems += (
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator}'. "
        )
    if date != stamp[:8]:
        problems += (
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'."
        )
    if problems:
        raise InvalidSignatureException(problems)


def _header_value(values: list[str]) -> str:
    return ",".join(" ".join(value.split()) for value in values)


def _canonical_uri(raw_path: str) -> str:
    """The path as AWS SDKs sign it for DynamoDB: dot segments and empty segments removed,
    then URI-encoded once more (an already-encoded ``%`` becomes ``%25``)."""
    path = raw_path.partition("?")[0] or "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normalized += "/"
    return quote(normalized, safe="/~")


def _canonical_query(raw_path: str) -> str:
    query = raw_path.partition("?")[2]
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))
