"""Requests signed as an SDK signs them, for tests that send their own bytes."""

from __future__ import annotations

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sigv4_headers(
    url: str, target: str, body: bytes, *, key: str, secret: str, region: str
) -> list[tuple[str, str]]:
    """The headers botocore's SigV4Auth gives a DynamoDB POST of ``body`` to ``url`` for
    ``target`` (Content-Type, X-Amz-Target, X-Amz-Date, Authorization), signed with ``key``
    and ``secret`` in ``region``. No Host: the signature covers ``url``'s host, which the
    sender must send."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(key, secret), "dynamodb", region).add_auth(request)
    return list(request.headers.items())
