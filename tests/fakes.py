"""Fakes for the service layer: an upstream that records what it is sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from daxproxy.core.errors import DynamoDBError
from daxproxy.core.wire import Headers, Target
from daxproxy.service.upstream import UpstreamResponse


@dataclass
class Sent:
    target: Target
    body: bytes
    headers: Headers
    retry_safe: bool


@dataclass
class FakeUpstream:
    """Answers every request with ``answer(sent)``; ``ready`` is what ping reports."""

    answer: Callable[[Sent], UpstreamResponse | DynamoDBError] = lambda sent: UpstreamResponse(
        200, [("x-amzn-RequestId", "UPSTREAM"), ("x-amz-crc32", "2745614147")], b"{}"
    )
    ready: bool = True
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        sent = Sent(target, body, headers, retry_safe)
        self.sent.append(sent)
        result = self.answer(sent)
        if isinstance(result, DynamoDBError):
            raise result
        return result

    async def ping(self) -> bool:
        return self.ready

    async def close(self) -> None:
        self.closed = True
