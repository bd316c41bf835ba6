"""The CBOR items of a DAX connection: read one at a time from a growing buffer, and written.

DAX frames nothing: a connection carries a plain concatenation of CBOR data items (RFC 8949),
and a request is as many items as its method takes. :class:`ItemReader` is fed the bytes as
they arrive and gives back whole items; an item cut short by the end of the bytes so far
raises :class:`NeedMore`. From then on its bytes are appended in place as they come, its
headers scanned there (:class:`_Scan`: each byte once, string contents skipped), and it is
decoded only once it is whole, so an item sent in many pieces costs no more than one sent at
once, plus the scan (work linear in the bytes received, not in their square). It never holds
more than ``max_bytes`` of an unfinished item: an item whose headers declare more (a string
of 2**63 bytes, an array of 2**40 items) or nest past any DAX request, one that grows past
it, or bytes that are not CBOR raise :class:`Malformed` at once, and the connection must be
closed (there is no way to find the next request in a broken stream).

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


# How deep the scan of an unfinished item follows nesting: tags count as a level there, and
# cbor2 counts only arrays and maps, so this is twice its cap; it bounds the scan's stack.
_MAX_SCAN_DEPTH = 2 * MAX_DEPTH + 2
_BREAK = 0xFF


class _Scan:
    """How far an unfinished item's headers have been read, so that each byte is read once.

    ``pending`` holds, for each open level, the items still to read there (-1: until a break
    stop code); ``end`` is where the headers read so far say the item reaches at least.
    """

    __slots__ = ("end", "max_bytes", "pending")

    def __init__(self, max_bytes: int) -> None:
        self.end = 0
        self.pending = [1]
        self.max_bytes = max_bytes

    def whole(self, data: bytes | bytearray, start: int) -> bool:
        """True once ``data`` holds the whole item that begins at ``start``; False while it
        may still come; :class:`Malformed` when it cannot be CBOR or fit in ``max_bytes``."""
        pending, size = self.pending, len(data) - start
        while pending:
            if pending[-1] == 0:
                pending.pop()
                continue
            if self.end >= size:
                return False
            if data[start + self.end] == _BREAK:
                if pending.pop() != -1:
                    raise Malformed("not CBOR: a break outside an indefinite-length item")
                self.end += 1
                continue
            read = _head(data, start + self.end, len(data))
            if read is None:
                return False
            if pending[-1] > 0:
                pending[-1] -= 1
            self._opened(*read)
        return self.end <= size

    def _opened(self, major: int, argument: int, header: int) -> None:
        """Past an item's head: what the item holds is still to read."""
        self.end += header
        if major in (2, 3):  # a string: skip its bytes, or read its chunks
            if argument >= 0:
                self.end += argument
            else:
                self.pending.append(-1)
        elif major in (4, 5):  # an array, a map: its items, or its pairs' keys and values
            if argument > self.max_bytes:  # each at least a byte long
                raise Malformed(f"an item longer than {self.max_bytes} bytes declared")
            self.pending.append(argument if argument < 0 else argument * (major - 3))
        elif major == 6:  # a tag: the one item it tags
            self.pending.append(1)
        if self.end > self.max_bytes:
            raise Malformed(f"an item longer than {self.max_bytes} bytes (the limit on a request)")
        if len(self.pending) > _MAX_SCAN_DEPTH:
            raise Malformed(f"not CBOR DAX sends: nested deeper than {MAX_DEPTH}")


def _head(data: bytes | bytearray, at: int, size: int) -> tuple[int, int, int] | None:
    """The major type, argument (-1: indefinite length) and length of the head at ``at``;
    None when it is cut short (``size``: the bytes there are)."""
    initial = data[at]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, 1
    if info < 28:
        header = 1 + (1 << (info - 24))
        if at + header > size:
            return None
        return major, int.from_bytes(data[at + 1 : at + header], "big"), header
    if info == 31 and 2 <= major <= 5:
        return major, -1, 1
    raise Malformed("not CBOR: reserved additional information")


class ItemReader:
    """Whole CBOR items from a byte stream fed in pieces, in time linear in the bytes fed.

    The bytes not yet read are held as one ``bytes`` that a stream and the decoder read in
    place (no copy per item); the stream is made when an item is to be decoded, not on
    every feed. While an item is cut short, its bytes and the pieces after it are appended
    to a ``bytearray`` that its scan reads in place; once whole, they are copied to
    ``bytes`` once and decoded. So a byte is copied a bounded number of times however many
    pieces its item comes in (the old way, the unread bytes copied again with every piece,
    was quadratic in an item's size). ``copied`` counts the bytes of held data copied again
    (each arriving piece's own copy aside): the tests hold it linear.
    """

    __slots__ = ("_data", "_decoder", "_max_bytes", "_pos", "_scan", "_stream", "copied")

    def __init__(self, max_bytes: int) -> None:
        self._data: bytes | bytearray = b""
        self._pos = 0  # where the next item begins in _data (0 in a bytearray)
        # Over _data (bytes) once an item was to be decoded since the last feed; a feed
        # drops it, so an item cut short is decoded again only from a new one.
        self._stream: io.BytesIO | None = None
        # One for the connection, pointed at each stream: setting fp drops cbor2's read-ahead
        # (shared values are per decode), and costs half as much as a new decoder.
        self._decoder = _decoder(io.BytesIO())
        self._max_bytes = max_bytes
        self._scan: _Scan | None = None  # the next item's, once it was found cut short
        self.copied = 0

    def feed(self, data: bytes) -> None:
        """Add the bytes that just arrived."""
        held, pos = self._data, self._pos
        rest = len(held) - pos
        if not rest:  # the common case: all read before, so these bytes are used as sent
            self._data = bytes(data)
        elif type(held) is bytearray:  # more of an item cut short: appended in place
            held += data
            return
        else:  # an item cut short: its bytes grow in place from now on
            self.copied += rest
            with memoryview(held) as view:
                grown = bytearray(view[pos:])
            grown += data
            self._data = grown
        self._pos = 0
        self._stream = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read as items."""
        return len(self._data) - self._pos

    def peek_bytes(self, n: int) -> bytes:
        """The first ``n`` buffered bytes (fewer when fewer have arrived), not consumed."""
        return bytes(self._data[self._pos : self._pos + n])

    def next(self) -> Any:
        """The next whole item, consumed; :class:`NeedMore` when it has not all arrived."""
        data = self._data
        if self._pos >= len(data):
            raise NeedMore
        scan = self._scan
        if scan is not None and not scan.whole(data, self._pos):
            raise NeedMore
        stream = self._stream
        if stream is None:
            if type(data) is bytearray:  # the item cut short is whole at last
                self.copied += len(data)
                self._data = data = bytes(data)
            self._stream = self._decoder.fp = stream = io.BytesIO(data)  # _pos is 0
        try:
            item = self._decoder.decode()
        except cbor2.CBORDecodeEOF:
            if scan is not None:  # whole by its headers, yet cut short: not well-formed
                raise Malformed("not CBOR: an item shorter than its headers say") from None
            self._scan = scan = _Scan(self._max_bytes)
            if scan.whole(data, self._pos):
                raise Malformed("not CBOR: an item shorter than its headers say") from None
            raise NeedMore from None
        except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as error:
            raise Malformed(f"not CBOR: {error}") from None
        self._scan = None
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
