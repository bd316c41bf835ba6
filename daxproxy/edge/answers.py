"""Answers as bytes on the wire: the head of an HTTP/1.1 answer, and the edge's own errors.

:func:`encode` turns a :class:`~daxproxy.core.wire.WireResponse` into the bytes to write:
the status line, ``Server: Server`` and ``Date`` (as DynamoDB sends them; the date is
formatted once a second), ``Content-Length`` always, ``Connection: close`` when the
connection closes after it, the answer's own headers, and the body (left out for a HEAD).
No header is ever chunked. In a worker process of several (``workers``), every answer
also names the worker, ``x-daxproxy-worker: <n>`` (:func:`label_worker`, once at
start-up). A :class:`~daxproxy.core.wire.ReadyAnswer` (a remembered GetItem hit, whose
header lines come as bytes) is written the same way, byte for byte: only its lines are
joined rather than formatted. :func:`error` is a DynamoDB-shaped error answer
(:func:`daxproxy.core.wire.error_response`: fresh request id and CRC, ``Allow: POST`` with a
405). Plain functions and constants, no I/O.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from daxproxy.core import wire
from daxproxy.core.errors import DynamoDBError

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Above this, the body is written as a second buffer rather than copied after the head.
_JOIN_BELOW = 64 * 1024

_STATUS_LINES: dict[int, str] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\nServer: Server\r\n" for s in HTTPStatus
}


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:  # a status the upstream made up: relayed as it is
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} Unknown\r\nServer: Server\r\n"
    return line


class _Clock:
    """The ``Date`` header line, formatted again only when the second changes, with the
    process's fixed header lines after it (so that they cost an answer nothing); ``ok``:
    a 200's status line, ``Server`` and those lines, as bytes."""

    __slots__ = ("fixed", "line", "ok", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = ""
        self.fixed = ""
        self.ok = b""

    def date(self) -> str:
        now = time.time()
        second = int(now)
        if second != self.second:
            self._turn(now, second)
        return self.line

    def ok_head(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self.second:
            self._turn(now, second)
        return self.ok

    def _turn(self, now: float, second: int) -> None:
        self.second = second
        self.line = f"Date: {formatdate(now, usegmt=True)}\r\n{self.fixed}"
        self.ok = (_STATUS_LINES[200] + self.line).encode("latin-1")


_CLOCK = _Clock()


def label_worker(worker: int) -> None:
    """Every answer from now on says ``x-daxproxy-worker: <worker>``."""
    _CLOCK.fixed = f"x-daxproxy-worker: {worker}\r\n"
    _CLOCK.second = -1


def encode(
    answer: wire.WireResponse | wire.ReadyAnswer, *, close: bool, head_only: bool = False
) -> tuple[bytes, bytes | None]:
    """The answer's bytes: the head with the body joined on when small (one write), else the
    head and the body apart (two writes, no copy of a large body). A
    :class:`~daxproxy.core.wire.ReadyAnswer`'s are the same bytes as a WireResponse's of
    the same headers, joined from the lines it has ready."""
    if isinstance(answer, wire.ReadyAnswer):
        return _ready(answer, close, head_only)
    body = answer.body
    parts = [_status_line(answer.status), _CLOCK.date(), f"Content-Length: {len(body)}\r\n"]
    if close:
        parts.append("Connection: close\r\n")
    for name, value in answer.headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    head = "".join(parts).encode("latin-1")
    if head_only or not body:
        return head, None
    if len(body) < _JOIN_BELOW:
        return head + body, None
    return head, body


_CLOSE = b"Connection: close\r\n"


def joined(answer: wire.ReadyAnswer) -> bytes | None:
    """:func:`encode`'s one write of a ReadyAnswer on a connection that stays open (a hit,
    as a rule); None when its body is too large to be joined on."""
    body = answer.body
    if len(body) >= _JOIN_BELOW:
        return None
    length, before, after = answer.lines
    return b"".join((_CLOCK.ok_head(), length, before, answer.request_id, after, body))


def _ready(answer: wire.ReadyAnswer, close: bool, head_only: bool) -> tuple[bytes, bytes | None]:
    if not close and not head_only:
        data = joined(answer)
        if data is not None:
            return data, None
    length, before, after = answer.lines
    body = answer.body
    head = [_CLOCK.ok_head(), length]
    if close:
        head.append(_CLOSE)
    head += (before, answer.request_id, after)
    if head_only:
        return b"".join(head), None
    if len(body) < _JOIN_BELOW:
        return b"".join((*head, body)), None
    return b"".join(head), body


def error(error: DynamoDBError, status: int | None = None) -> wire.WireResponse:
    """``error`` in DynamoDB's shape; ``status`` overrides its own (a 404, a 417)."""
    answer = wire.error_response(error)
    if status is not None:
        answer.status = status
    return answer
