"""A bounded memo: values kept by key, at most so many and so many bytes together, the one
got or put least recently forgotten first.

:class:`Memo` keeps what the hot paths would otherwise compute again for the same input:
DAX's GetItem requests and replies (:mod:`daxproxy.service.dax_calls`) and the GetItem
bodies HTTP clients send again (:mod:`daxproxy.service.body_memo`). A value's size is what
its caller says it costs; a value larger than the whole bound is not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most ``max_entries`` values, of at most ``max_bytes`` together (a value's size is
    what :meth:`put` is told), the one got or put least recently forgotten first."""

    __slots__ = ("_bytes", "_entries", "_max_bytes", "_max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        # Ordered by last use: a plain dict finds its first key by a scan past the slots
        # its deleted keys left, which grows with every eviction.
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def get(self, key: K) -> V | None:
        entries = self._entries
        found = entries.get(key)
        if found is None:
            return None
        entries.move_to_end(key)  # a hot key is never the one forgotten
        return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` for ``key`` (in place of any it had), the least recently used
        forgotten to make room; a value larger than the whole bound is not kept."""
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self._max_bytes:
            return
        while entries and (
            len(entries) >= self._max_entries or self._bytes + size > self._max_bytes
        ):
            self._bytes -= entries.popitem(last=False)[1][1]
        entries[key] = (value, size)
        self._bytes += size

    def pop(self, key: K) -> None:
        """Forget ``key``'s value, if it has one."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes
