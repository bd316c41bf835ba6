"""The quick lane: one whole request in one read, parsed with no Python call per field.

A :class:`Lane` belongs to one connection's :class:`~daxproxy.edge.reader.RequestReader`,
which offers it each read that begins at a request's start. :meth:`Lane.read` gives the
request's ``X-Amz-Target`` and body when the read is exactly one whole
``POST / HTTP/1.1`` request on a connection that stays open, with no ``Content-Encoding``
or ``Expect`` field, its ``X-Amz-Target`` and ``Connection`` fields spelled as SDKs spell
them (``KNOWN_FIELDS``; a field nobody looks at may be spelled any way), within the
reader's bounds on a field's length and on their number; else None, and the reader reads
the bytes as it reads any (its own parser has not seen them).
The reader offers what the lane reads to the quick way of DynamoDB's route, which answers
only a body it has answered before (within the body's bound).

The lane's parser is llhttp, as the reader's is, so a read it takes, the reader would
have taken, with the same values (the reader's leniency to bytes after a ``Connection:
close`` request never matters: the lane leaves such a request to the reader). Its
callbacks are C functions: a field goes into a dict, a body piece into a list. The dict
keeps the last field of each spelling, as the reader keeps the last of each field it
reads; a target in two spellings is left to the reader, and so is a ``Connection`` field
that says anything but ``keep-alive``. A read that leaves the parser part-way through a
request (an error, a request cut short, one more begun) costs the lane a new parser.
"""

from __future__ import annotations

from functools import partial
from operator import setitem
from types import SimpleNamespace

import httptools

from daxproxy.edge.limits import ENCODING, EXPECT, KNOWN_FIELDS, MAX_HEADER_FIELDS

START = b"POST / HTTP/1.1\r\n"
# The field names of a request the lane reads: those the reader knows, but for
# Content-Encoding and Expect (the reader reads those requests).
_NAMES = frozenset(name for name, kind in KNOWN_FIELDS.items() if kind not in {ENCODING, EXPECT})
# Lower-cased, the fields whose other spellings leave a request to the reader: those the
# lane or the reader looks at (the framing's are llhttp's, the same in both).
_LOOKED_AT = frozenset((b"x-amz-target", b"connection", b"content-encoding", b"expect"))
_TARGET, _TARGET_LOWER = b"X-Amz-Target", b"x-amz-target"
_CONNECTION, _CONNECTION_LOWER = b"Connection", b"connection"
# A head of at most this many bytes cannot hold more fields than the reader takes (a field
# is at least "a:" and CRLF).
_FEW_FIELDS_BYTES = 4 * MAX_HEADER_FIELDS
_ONE_REQUEST = [False, True]  # the marks of one request begun and completed


class Lane:
    __slots__ = ("_bodies", "_fields", "_marks", "_max_field", "_parser")

    def __init__(self, max_field: int) -> None:
        self._max_field = max_field
        self._fields: dict[bytes, bytes] = {}
        self._marks: list[bool] = []
        self._bodies: list[bytes] = []
        self._parser = self._new_parser()

    def read(self, data: bytes) -> tuple[bytes | None, bytes] | None:
        """``data``'s request as its ``X-Amz-Target`` and its body when the lane reads it
        (the module's contract); else None."""
        if not data.startswith(START):
            return None
        fields, marks, bodies = self._fields, self._marks, self._bodies
        fields.clear()
        marks.clear()
        bodies.clear()
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            marks.clear()
        if marks != _ONE_REQUEST:  # not one whole request: the parser is part-way through
            self._parser = self._new_parser()
            return None
        if (
            not (fields.keys() <= _NAMES or _none_looked_at(fields.keys() - _NAMES))
            or (_TARGET in fields and _TARGET_LOWER in fields)
            or ((_CONNECTION in fields or _CONNECTION_LOWER in fields) and not _stays_open(fields))
        ):
            return None
        body = bodies[0] if len(bodies) == 1 else b"".join(bodies)
        head = len(data) - len(body)
        if head > self._max_field or (  # else no field can be too long
            head > _FEW_FIELDS_BYTES  # the request line, the fields and the blank line:
            and data.count(b"\n", 0, head) > MAX_HEADER_FIELDS + 2
        ):
            return None
        return fields.get(_TARGET, fields.get(_TARGET_LOWER)), body

    def _new_parser(self) -> httptools.HttpRequestParser:
        callbacks = SimpleNamespace(
            on_message_begin=partial(self._marks.append, False),
            on_header=partial(setitem, self._fields),
            on_body=self._bodies.append,
            on_message_complete=partial(self._marks.append, True),
        )
        return httptools.HttpRequestParser(callbacks)


def _none_looked_at(names: set[bytes]) -> bool:
    """No field the lane or the reader looks at among these (in any spelling)."""
    return all(name.lower() not in _LOOKED_AT for name in names)


def _stays_open(fields: dict[bytes, bytes]) -> bool:
    """An HTTP/1.1 request's connection stays open unless its ``Connection`` says
    otherwise: True when each says just ``keep-alive``."""
    for name in (_CONNECTION, _CONNECTION_LOWER):
        value = fields.get(name)
        if value is not None and value.lower() != b"keep-alive":
            return False
    return True
