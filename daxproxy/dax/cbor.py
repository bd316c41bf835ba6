"""The CBOR items of a DAX connection: read one at a time from a growing buffer, and written.

DAX frames nothing: a connection carries a plain concatenation of CBOR data items (RFC 8949),
and a request is as many items as its method takes. :class:`ItemReader` is fed the bytes as
they arrive and gives back whole items; an item cut short by the end of the bytes so far
raises :class:`NeedMore` and is read again, from its first byte, once more bytes come. It
never holds more than ``max_bytes`` of an unfinished item: past that, or on bytes that are
not CBOR, it raises :class:`Malformed` and the connection must be closed (there is no way
to find the next request in a broken stream).

The decoding is cbor2's (C core): definite and indefinite lengths, floats of every width,
bignums (tags 2, 3) as ints, decimal fractions (tag 4) as :class:`~decimal.Decimal` at full
precision, duplicate map keys allowed (the last wins: the Python client writes key 4 twice
in one map, the raw condition text and then its compiled tree), nesting capped at
``MAX_DEPTH``. DAX's own tags stay :class:`cbor2.CBORTag` for :mod:`daxproxy.dax.values`
to read: 3321 string set, 3322 number set, 3323 binary set, 3324 document path ordinal.

:func:`dumps` writes one item (a Decimal as tag 4, an int past 64 bits as a bignum, as the
clients write them).
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

TAG_STRING_SET = 3321
TAG_NUMBER_SET = 3322
TAG_BINARY_SET = 3323
TAG_PATH_ORDINAL = 3324

# DynamoDB nests documents at most 32 levels deep; the expression trees and the request
# wrappers add a few more. cbor2's own default is 400.
MAX_DEPTH = 64


class NeedMore(Exception):
    """The bytes so far end inside the next item."""


class Malformed(Exception):
    """The bytes are not a CBOR item DAX could have sent; the connection cannot go on."""


class ItemReader:
    """Whole CBOR items from a byte stream fed in pieces. The bytes not yet read are held
    as one ``bytes`` that a stream and a decoder read in place (no copy per item); each
    feed makes them anew, from what was left and what came."""

    __slots__ = ("_data", "_decoder", "_max_bytes", "_pos", "_stream")

    def __init__(self, max_bytes: int) -> None:
        self._data = b""
        self._pos = 0  # where the next item begins in _data
        self._stream = io.BytesIO()
        self._decoder = _decoder(self._stream)
        self._max_bytes = max_bytes

    def feed(self, data: bytes) -> None:
        """Add the bytes that just arrived."""
        rest = self._data[self._pos :] if self._pos < len(self._data) else b""
        self._data = rest + bytes(data) if rest else bytes(data)
        self._pos = 0
        self._stream = io.BytesIO(self._data)
        self._decoder = _decoder(self._stream)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read as items."""
        return len(self._data) - self._pos

    def peek_bytes(self, n: int) -> bytes:
        """The first ``n`` buffered bytes (fewer when fewer have arrived), not consumed."""
        return self._data[self._pos : self._pos + n]

    def next(self) -> Any:
        """The next whole item, consumed; :class:`NeedMore` when it has not all arrived."""
        if self._pos >= len(self._data):
            raise NeedMore
        stream = self._stream
        if stream.tell() != self._pos:  # left inside an item that had not all arrived
            stream.seek(self._pos)
        try:
            item = self._decoder.decode()
        except cbor2.CBORDecodeEOF:
            if len(self._data) - self._pos > self._max_bytes:
                raise Malformed(
                    f"an item longer than {self._max_bytes} bytes (the limit on a request)"
                ) from None
            raise NeedMore from None
        except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as error:
            raise Malformed(f"not CBOR: {error}") from None
        self._pos = stream.tell()
        return item


def _decoder(stream: io.BytesIO) -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(stream, max_depth=MAX_DEPTH, allow_duplicate_keys=True)


def loads_from(stream: io.BytesIO) -> Any:
    """One item from ``stream``, which is left just past it."""
    return _decoder(stream).decode()


def loads(data: bytes) -> Any:
    """The single item ``data`` holds (nothing may follow it): :class:`Malformed` if not."""
    items = loads_all(data)
    if len(items) != 1:
        raise Malformed(f"expected one CBOR item, found {len(items)}")
    return items[0]


def loads_all(data: bytes) -> list[Any]:
    """Every item of ``data``, a concatenation of whole items (DAX's values payloads)."""
    stream = io.BytesIO(data)
    items = []
    try:
        while stream.tell() < len(data):
            items.append(loads_from(stream))
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as error:
        raise Malformed(f"not CBOR: {error}") from None
    return items


def dumps(item: Any) -> bytes:
    """One item's bytes."""
    return cbor2.dumps(item)
