"""GetItem request bodies remembered with the cache key they name: a body sent again is a
hit with no JSON parse, request check or key.

:class:`BodyMemo` belongs to the item reads (:class:`~daxproxy.service.item_reads.ItemReads`),
which tell it (:meth:`BodyMemo.remember`) each GetItem body they answered or would answer
from the stored answer (no projection, no capacity, not consistent, sent uncompressed, so
the bytes are the request), with its table as the request names it, the table info its key
was made with, and the key. :meth:`BodyMemo.remembered` answers that body again while the
registry still knows the table by that very info (a table learned anew, changed or gone
makes it read again, and the body is forgotten) and the cache holds the key, counted as the
cache's hit; else None, with nothing counted. :meth:`BodyMemo.ready` gives the same hit as
a :class:`~daxproxy.core.wire.ReadyAnswer`, the same bytes on the wire: the memo keeps a
body's last header lines as bytes (a hundred-odd, never the item), reused for an entry of
the length and stored CRC they were made for, else made again. At most ``MEMO_BYTES``
of bodies, each charged its length and ``ENTRY_BYTES`` for what is kept with it (a
:class:`~daxproxy.service.memo.Memo`), the one answered or remembered least recently
forgotten first (a hot body stays, however many cold ones come and go). The bound is in
bytes because a body is as long as its sender makes it (spaces are JSON). It holds some
25,000 bodies of 50 bytes: more than the hot keys of most loads. A hit whose body is not
remembered is parsed: about 21 µs of the proxy's work in process, against 6 µs.
"""

from __future__ import annotations

from daxproxy.core import item_requests as requests
from daxproxy.core.cache import VALUE_START, ItemCache
from daxproxy.core.keys import ItemKey
from daxproxy.core.wire import ReadyAnswer, WireResponse, new_request_id_tail
from daxproxy.service.calls import hit_lines, hit_response
from daxproxy.service.memo import Memo
from daxproxy.service.tables import TableInfo, TableRegistry

MEMO_BYTES = 16 << 20
# What a remembered body costs beyond its own bytes: its record, its ready header lines and
# its slot in the memo (measured: about 575 bytes on CPython 3.11).
ENTRY_BYTES = 600

# A body's ready header lines (calls.hit_lines), after the stored CRC's bytes
# (item_requests.stored_mark) and the entry's length they were made for.
_Lines = tuple[bytes, int, tuple[bytes, bytes, bytes]]
_Remembered = tuple[str, TableInfo, ItemKey, _Lines | None]


class BodyMemo(Memo[bytes, _Remembered]):
    """Body -> (its TableName, the table info its key was made with, the key, its ready
    lines or None), bounded by the bytes alone: no body costs less than ``ENTRY_BYTES``.
    A hit reads the memo's entries in place (one frame fewer than :meth:`Memo.get`) and
    moves its body to their end."""

    __slots__ = ("_cache", "_tables")

    def __init__(self, cache: ItemCache, tables: TableRegistry) -> None:
        super().__init__(MEMO_BYTES // ENTRY_BYTES, MEMO_BYTES)
        self._cache = cache
        self._tables = tables

    def remember(self, body: bytes, table: str, info: TableInfo, key: ItemKey) -> None:
        self.put(body, (table, info, key, None), len(body) + ENTRY_BYTES)

    def remembered(self, body: bytes) -> tuple[WireResponse, str] | None:
        """The hit, and the table as the request names it (the module's contract)."""
        recalled = self._recall(body)
        if recalled is None:
            return None
        found, entry = recalled
        return hit_response(*requests.stored_answer(entry, VALUE_START)), found[0]

    def ready(self, body: bytes) -> tuple[ReadyAnswer, str] | None:
        """:meth:`remembered`'s hit as a :class:`ReadyAnswer`: the same bytes on the wire."""
        # _recall's steps, one frame fewer per hit.
        entries = self._entries
        found = entries.get(body)
        if found is None:
            return None
        table, info, key, lines = found[0]
        if self._tables.known(table) is not info:
            self.pop(body)
            return None
        entry = self._cache.hit(key)
        if entry is None:
            return None
        entries.move_to_end(body)  # the least recently answered body is forgotten first
        if lines is None or len(entry) != lines[1] or not entry.startswith(lines[0], VALUE_START):
            # Made for another answer (or none yet): the lines of this one.
            mark = requests.stored_mark(entry, VALUE_START)
            lines = (mark, len(entry), hit_lines(*requests.stored_answer(entry, VALUE_START)))
            entries[body] = ((table, info, key, lines), found[1])
        answer = requests.stored_body(entry, VALUE_START)
        return ReadyAnswer(lines[2], new_request_id_tail(), answer), table

    def _recall(self, body: bytes) -> tuple[_Remembered, bytes] | None:
        """A remembered body's record and its key's entry, counted as a hit; None (nothing
        counted) when the body is not remembered, its table's info has changed since (the
        body is forgotten), or the cache does not hold its key."""
        entries = self._entries
        found = entries.get(body)
        if found is None:
            return None
        record = found[0]
        if self._tables.known(record[0]) is not record[1]:
            self.pop(body)
            return None
        entry = self._cache.hit(record[2])
        if entry is None:
            return None
        entries.move_to_end(body)  # the least recently answered body is forgotten first
        return record, entry
