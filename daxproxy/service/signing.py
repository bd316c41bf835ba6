"""Credentials and SigV4 signing of upstream requests.

A client signs for the proxy's host, so its signature is never valid upstream: the proxy
signs every upstream request anew with its own credentials, as DAX calls DynamoDB with the
cluster's IAM role. Credentials come from the standard AWS chain (environment, profile,
container and instance roles) through aiobotocore, which also refreshes expiring ones.
Secrets never leave this module except inside an ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Protocol
from urllib.parse import urlsplit

from aiobotocore.session import AioSession
from botocore.credentials import ReadOnlyCredentials

from daxproxy.core import sigv4

log = logging.getLogger(__name__)

# Hashing a body releases the GIL; past this size it is worth a thread rather than holding
# the event loop (a 16 MiB body takes tens of milliseconds to hash).
_THREAD_SIGNING_BYTES = 256 * 1024
# Request shapes whose signing templates are kept.
_MAX_TEMPLATES = 256
# Placeholder credentials for upstreams that accept any (moto, dynalite, DynamoDB Local).
LOCAL_CREDENTIALS = ReadOnlyCredentials("daxproxy", "daxproxy-local-secret", None)


class CredentialSource(Protocol):
    async def get(self) -> ReadOnlyCredentials: ...


class StaticCredentials:
    def __init__(self, credentials: ReadOnlyCredentials) -> None:
        self._credentials = credentials

    async def get(self) -> ReadOnlyCredentials:
        return self._credentials


class ChainCredentials:
    """The AWS credential chain; refreshable credentials are refreshed before they expire."""

    def __init__(self, credentials: object) -> None:
        self._credentials = credentials

    async def get(self) -> ReadOnlyCredentials:
        frozen: ReadOnlyCredentials = await self._credentials.get_frozen_credentials()  # type: ignore[attr-defined]
        return frozen


async def load_chain_credentials(session: AioSession) -> ChainCredentials | None:
    """The chain's credentials, or None when the chain finds none."""
    credentials = await session.get_credentials()
    return None if credentials is None else ChainCredentials(credentials)


def default_region(session: AioSession) -> str:
    """The region the AWS configuration names (AWS_REGION, AWS_DEFAULT_REGION, profile)."""
    region = session.get_config_variable("region")
    return str(region) if region else "us-east-1"


class Signer:
    """Adds SigV4 headers (``Authorization``, ``X-Amz-Date``, token) to an upstream request.

    Only the headers the proxy itself sets are signed (see :mod:`daxproxy.core.sigv4`): any
    other forwarded header may be normalised in transit without breaking the signature. One
    :class:`~daxproxy.core.sigv4.Template` is kept per URL, operation and content type, and
    made again when the day or the credentials (a refresh) change.
    """

    def __init__(self, credentials: CredentialSource, region: str) -> None:
        self._credentials = credentials
        self.region = region
        # By URL, operation and content type: the template of the day and credentials it
        # was made for (bounded: operations and content types come from clients).
        self._templates: dict[
            tuple[str, str, str], tuple[str, ReadOnlyCredentials, sigv4.Template]
        ] = {}

    async def lines(self, url: str, target: str, content_type: str, body: bytes) -> str:
        """Every header the signature covers, and the signature, as header lines ending in
        CR LF (Host, Content-Type, X-Amz-Target, X-Amz-Date, the token, Authorization)."""
        credentials = await self._credentials.get()
        amz_date = _amz_date(int(time.time()))
        template = self._template(url, target, content_type, amz_date[:8], credentials)
        if len(body) > _THREAD_SIGNING_BYTES:
            return await asyncio.to_thread(template.lines, amz_date, body)
        return template.lines(amz_date, body)

    async def sign(
        self, url: str, target: str, content_type: str, body: bytes
    ) -> list[tuple[str, str]]:
        """:meth:`lines` as header pairs: send them as they are."""
        credentials = await self._credentials.get()
        amz_date = _amz_date(int(time.time()))
        template = self._template(url, target, content_type, amz_date[:8], credentials)
        if len(body) > _THREAD_SIGNING_BYTES:
            auth = await asyncio.to_thread(template.headers, amz_date, body, credentials.token)
        else:
            auth = template.headers(amz_date, body, credentials.token)
        return [
            ("Host", _host_header(url)),
            ("Content-Type", content_type),
            ("X-Amz-Target", target),
            *auth,
        ]

    def _template(
        self,
        url: str,
        target: str,
        content_type: str,
        date: str,
        credentials: ReadOnlyCredentials,
    ) -> sigv4.Template:
        """The template for this request shape, made once a day and credentials."""
        key = (url, target, content_type)
        found = self._templates.get(key)
        if found is not None and found[0] == date and found[1] == credentials:
            return found[2]
        template = sigv4.Template(
            host=_host_header(url),
            target=target,
            content_type=content_type,
            date=date,
            region=self.region,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            token=credentials.token,
        )
        if len(self._templates) >= _MAX_TEMPLATES:
            self._templates.clear()
        self._templates[key] = (date, credentials, template)
        return template


@functools.lru_cache(maxsize=4)
def _amz_date(second: int) -> str:
    """``X-Amz-Date`` for a second of Unix time: formatted once per second, not per request."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


@functools.lru_cache(maxsize=64)
def _host_header(url: str) -> str:
    """The Host header exactly as an HTTP client sends it: no port when it is the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    if parts.port is not None and parts.port != default_port:
        return f"{host}:{parts.port}"
    return host
