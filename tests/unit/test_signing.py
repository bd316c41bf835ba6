"""The signer keeps one template per request shape, and never signs with a stale one.

A template holds the day's signing key and the credentials it was made with; these tests
prove a new day or new credentials (a refresh) make a new one, checked against botocore.
"""

from __future__ import annotations

import pytest
from botocore.credentials import ReadOnlyCredentials

from daxproxy.core import sigv4
from daxproxy.service import signing
from daxproxy.service.signing import Signer

URL = "http://127.0.0.1:8000"
TARGET = "DynamoDB_20120810.GetItem"
CONTENT_TYPE = "application/x-amz-json-1.0"
BODY = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'


class Rotating:
    """A credential source whose credentials the test replaces."""

    def __init__(self, credentials: ReadOnlyCredentials) -> None:
        self.credentials = credentials

    async def get(self) -> ReadOnlyCredentials:
        return self.credentials


def expected(credentials: ReadOnlyCredentials, amz_date: str) -> list[tuple[str, str]]:
    """What the one-off signer (checked against botocore in test_sigv4) gives."""
    return [
        ("Host", "127.0.0.1:8000"),
        ("Content-Type", CONTENT_TYPE),
        ("X-Amz-Target", TARGET),
        *sigv4.sign(
            host="127.0.0.1:8000",
            target=TARGET,
            content_type=CONTENT_TYPE,
            body=BODY,
            amz_date=amz_date,
            region="eu-west-1",
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            token=credentials.token,
        ),
    ]


def pairs(lines: str) -> list[tuple[str, str]]:
    return [tuple(line.split(": ", 1)) for line in lines[:-2].split("\r\n")]  # type: ignore[misc]


async def test_a_new_day_or_new_credentials_sign_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    first = ReadOnlyCredentials("AKID1", "secret-1", None)
    source = Rotating(first)
    signer = Signer(source, "eu-west-1")
    now = 1_796_601_599.0  # 2026-12-06T23:59:59Z
    monkeypatch.setattr(signing.time, "time", lambda: now)
    assert await signer.sign(URL, TARGET, CONTENT_TYPE, BODY) == expected(first, "20261206T235959Z")
    assert pairs(await signer.lines(URL, TARGET, CONTENT_TYPE, BODY)) == expected(
        first, "20261206T235959Z"
    )
    now += 1  # the next day: a new signing key and scope
    assert pairs(await signer.lines(URL, TARGET, CONTENT_TYPE, BODY)) == expected(
        first, "20261207T000000Z"
    )
    second = source.credentials = ReadOnlyCredentials("AKID2", "secret-2", "token")
    assert pairs(await signer.lines(URL, TARGET, CONTENT_TYPE, BODY)) == expected(
        second, "20261207T000000Z"
    )
    assert await signer.sign(URL, TARGET, CONTENT_TYPE, BODY) == expected(
        second, "20261207T000000Z"
    )


async def test_the_templates_kept_are_bounded() -> None:
    signer = Signer(Rotating(ReadOnlyCredentials("AKID", "secret", None)), "eu-west-1")
    for n in range(signing._MAX_TEMPLATES * 3):
        await signer.lines(URL, f"DynamoDB_20120810.Op{n}", CONTENT_TYPE, BODY)
    assert len(signer._templates) <= signing._MAX_TEMPLATES
