"""The item cache's storage: an LRU bounded by bytes and by a record TTL, with no I/O.

Entries hold an opaque value: for the item cache, an item's ready GetItem answer and its
CRC (:func:`daxproxy.core.item_requests.stored_item`: what a plain hit sends, so a hit
costs no encoding, no copy and no CRC) or :data:`NOT_FOUND`, DAX's negative entry; for the
query cache, a page. Every entry is charged :func:`entry_size`: its
bytes plus a fixed per-entry overhead measured for CPython (see ``bench/memory.py``), so the
byte budget bounds the process's real memory, not just the payload. The clock is injected.
With a ``stale_grace``, an expired entry is a miss but stays (in its LRU place, charged to
the budget) until the grace runs out, so that :meth:`ItemCache.get_stale` can still give it
when the upstream fails; writes and table drops remove it exactly as they remove a fresh one.

Dropping a table is O(1): the cache counts drops in one *generation* and stamps each entry
with the generation it was stored in; an entry older than its table's last drop is dead and
is freed when met. A fill passes the generation it started in (``since``) to :meth:`put`,
which refuses it when its table was dropped meanwhile, so a drop retires the fills in flight
too. After a write whose outcome is unknown (no answer, a 5xx) its keys or tables are *held*
(:meth:`ItemCache.hold`): nothing is stored for them until the write can no longer land.

:class:`WriteTracker` is the bookkeeping that keeps fills honest: a fill (a miss being
loaded from upstream) may only be installed when no write to its key was in flight at any
moment of the fill, and a write may only install its result when no other write to the
same key overlapped it; otherwise the key is evicted and the next read goes upstream.
"""

from __future__ import annotations

import enum
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from daxproxy.core.keys import ItemKey

NOT_FOUND = b""  # a negative entry: DynamoDB said there is no such item
# Bytes CPython spends per entry beyond the payload and key bytes: the key tuple and its
# strings' headers, the stored bytes object's header and its expiry header, and the
# OrderedDict's slot and link. Measured by bench/memory.py (RSS per entry on CPython 3.11).
ENTRY_OVERHEAD = 300
# Each stored value starts with its expiry time and the generation it was stored in: one
# object per entry instead of three (an entry object, a float and the value) saves 68 bytes.
_HEADER = struct.Struct("<dQ")
VALUE_START = _HEADER.size  # where the value starts in what get_entry gives
# Tables whose last drop the cache remembers; past this many it frees every dead entry and
# forgets them all (a fill that started before then is refused, at the cost of one miss).
MAX_DROPPED_TABLES = 1024

Clock = Callable[[], float]


class Eviction(enum.Enum):
    SIZE = "size"
    TTL = "ttl"
    WRITE = "write"
    TABLE = "table"


def entry_size(key: ItemKey, value: bytes) -> int:
    """The bytes an entry is charged against the budget."""
    return _charged(key, len(value))


def _charged(key: ItemKey, value_length: int) -> int:
    _, hash_value, range_value = key
    key_bytes = len(hash_value) + (len(range_value) if range_value is not None else 0)
    return ENTRY_OVERHEAD + key_bytes + value_length


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evicted: Counter[Eviction] = field(default_factory=Counter)
    evicted_bytes: int = 0
    stale_served: int = 0  # counted by whoever serves a get_stale value


class ItemCache:
    """Table-and-key to encoded item, least recently used first out, bounded by bytes.

    The query cache uses the same class, keyed by table and canonical request.

    ``ttl`` is in seconds; ``None`` means entries never expire (LRU and writes only).
    Reading an entry refreshes its place in the LRU order, never its TTL; storing one
    (a fill or a write through the proxy) starts its TTL afresh. ``stale_grace`` (seconds,
    0: off) is how long past its TTL an entry stays retrievable by :meth:`get_stale`.
    """

    def __init__(
        self,
        max_bytes: int,
        ttl: float | None,
        clock: Clock = time.monotonic,
        *,
        stale_grace: float = 0.0,
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.stale_grace = stale_grace
        self._clock = clock
        self._entries: OrderedDict[ItemKey, bytes] = OrderedDict()
        self._generation = 0  # counts drops; each entry is stamped with the one it was stored in
        # Each table's last drop; a table not here was last dropped at most at ``_cleared``
        # (drop_all) as far as entries go, and at most at ``_forgotten`` as far as fills go.
        self._dropped: dict[str, int] = {}
        self._cleared = 0
        self._forgotten = 0
        # Item keys and tables nothing may be stored for, until their deadline (cache clock);
        # held in deadline order, since every hold lasts as long.
        self._held: OrderedDict[ItemKey | str, float] = OrderedDict()
        # False: nothing is stored (a worker whose change channel is down, see
        # daxproxy.service.coherence).
        self.storing = True
        self.bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: ItemKey) -> bytes | None:
        """The encoded item, :data:`NOT_FOUND`, or None on a miss (absent or expired)."""
        entry = self.get_entry(key)
        return None if entry is None else entry[VALUE_START:]

    def get_entry(self, key: ItemKey) -> bytes | None:
        """As :meth:`get`, but the stored object itself, whose value starts at byte
        :data:`VALUE_START`: for a caller that sends part of a value without copying it."""
        entry = self.hit(key)
        if entry is not None:
            return entry
        entry = self._entries.get(key)
        if entry is not None:  # expired, or its table dropped since it was stored
            expires, stamp = _HEADER.unpack_from(entry)
            dropped = stamp < self._dropped.get(key[0], self._cleared)
            now = self._clock()
            if expires <= now:
                if expires + self.stale_grace <= now:
                    self._remove(key, Eviction.TTL)
                elif dropped:
                    self._remove(key, Eviction.TABLE)
                # else within the grace it stays, for get_stale
            elif dropped:
                self._remove(key, Eviction.TABLE)
        self.stats.misses += 1
        return None

    def hit(self, key: ItemKey) -> bytes | None:
        """The stored object when :meth:`get_entry` would return it (and counted as the
        hit it is); else None, with nothing counted, removed or moved."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, stamp = _HEADER.unpack_from(entry)
        if expires <= self._clock() or stamp < self._dropped.get(key[0], self._cleared):
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry

    def now(self) -> float:
        """The cache's clock."""
        return self._clock()

    def get_stale(self, key: ItemKey) -> tuple[bytes, float] | None:
        """The entry a failed upstream call may fall back on, and how many seconds past its
        TTL it is (0 when fresh); None when there is none within the grace, or no grace.

        Neither a hit nor a miss, and it leaves the LRU order alone: the look-up that missed
        was counted already.
        """
        if not self.stale_grace:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, stamp = _HEADER.unpack_from(entry)
        expired_for = self._clock() - expires
        if expired_for >= self.stale_grace or stamp < self._dropped.get(key[0], self._cleared):
            return None
        return entry[_HEADER.size :], max(expired_for, 0.0)

    def put(self, key: ItemKey, value: bytes, *, since: int | None = None) -> bool:
        """Store an item (or :data:`NOT_FOUND`) with a fresh TTL, then evict down to budget;
        whether it was stored.

        ``since``: the :meth:`generation` a fill started in; the fill is refused when its
        table was dropped after that. Nothing is stored for a held key or table, nor while
        :attr:`storing` is off (what the cache held for the key is evicted).
        """
        if since is not None and self.dropped_since(key[0], since):
            return False
        size = entry_size(key, value)
        if size > self.max_bytes or not self.storing or (self._held and self._is_held(key)):
            self.evict(key)
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= _charged(key, len(old) - _HEADER.size)
        expires = float("inf") if self.ttl is None else self._clock() + self.ttl
        # A new object of exactly the entry's size: orjson builds its output in a larger
        # buffer and shrinks it, and a kept shrunken buffer pins the whole allocation
        # (4 KiB for a 200-byte item, measured by bench/memory.py).
        self._entries[key] = _HEADER.pack(expires, self._generation) + value
        self.bytes += size
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest, Eviction.SIZE)
        return True

    def evict(self, key: ItemKey, reason: Eviction = Eviction.WRITE) -> None:
        if key in self._entries:
            self._remove(key, reason)

    def generation(self) -> int:
        """The current generation: what a fill starting now passes to :meth:`put` as
        ``since``, and to :meth:`dropped_since`."""
        return self._generation

    def dropped_since(self, table: str, since: int) -> bool:
        """Whether ``table`` may have been dropped after generation ``since``."""
        return self._dropped.get(table, self._forgotten) > since

    @property
    def tracked_tables(self) -> int:
        """How many tables' drops the cache remembers (at most :data:`MAX_DROPPED_TABLES`)."""
        return len(self._dropped)

    def drop_table(self, table: str) -> None:
        """Forget every entry of a table at once; entries are freed as they are met."""
        self._generation += 1
        self._dropped[table] = self._generation
        if len(self._dropped) > MAX_DROPPED_TABLES:
            self._free_dropped()

    def drop_all(self) -> None:
        """Forget every entry, and retire every fill in flight."""
        self._generation += 1
        self._cleared = self._forgotten = self._generation
        self._dropped.clear()
        for key in list(self._entries):
            self._remove(key, Eviction.TABLE)

    def hold(self, keys: Iterable[ItemKey | str], seconds: float) -> None:
        """Evict these item keys (and forget these tables' entries), and store nothing for
        any of them for ``seconds``: a write that may land until then could outdate it."""
        until = self._clock() + seconds
        for key in keys:
            if isinstance(key, str):
                self.drop_table(key)
            else:
                self.evict(key)
            self._held.pop(key, None)
            self._held[key] = until

    def _is_held(self, key: ItemKey) -> bool:
        held, now = self._held, self._clock()
        while held and next(iter(held.values())) <= now:
            held.popitem(last=False)
        never = float("-inf")
        return held.get(key, never) > now or held.get(key[0], never) > now

    def _free_dropped(self) -> None:
        """Free every dead entry, then forget the tables' drops (bounds their memory)."""
        for key, entry in list(self._entries.items()):
            if _HEADER.unpack_from(entry)[1] < self._dropped.get(key[0], self._cleared):
                self._remove(key, Eviction.TABLE)
        self._dropped.clear()
        self._forgotten = self._generation

    def _remove(self, key: ItemKey, reason: Eviction) -> None:
        entry = self._entries.pop(key)
        size = _charged(key, len(entry) - _HEADER.size)
        self.bytes -= size
        self.stats.evicted[reason] += 1
        self.stats.evicted_bytes += size


class FillTicket:
    """One fill in flight; ``clean`` turns False when a write to its key overlaps it.
    ``since`` is the cache generation it started in (see :meth:`ItemCache.put`)."""

    __slots__ = ("clean", "key", "since")

    def __init__(self, key: ItemKey, clean: bool, since: int) -> None:
        self.key = key
        self.clean = clean
        self.since = since


class WriteTicket:
    """One write in flight; ``contended`` holds the keys another write overlapped."""

    __slots__ = ("contended", "keys")

    def __init__(self, keys: tuple[ItemKey, ...]) -> None:
        self.keys = keys
        self.contended: set[ItemKey] = set()


class WriteTracker:
    def __init__(self) -> None:
        self._writes: dict[ItemKey, list[WriteTicket]] = {}
        self._fills: dict[ItemKey, list[FillTicket]] = {}

    def write_started(self, keys: Iterable[ItemKey]) -> WriteTicket:
        ticket = WriteTicket(tuple(dict.fromkeys(keys)))
        for key in ticket.keys:
            others = self._writes.setdefault(key, [])
            if others:
                ticket.contended.add(key)
                for other in others:
                    other.contended.add(key)
            others.append(ticket)
            self._dirty(key)
        return ticket

    def write_finished(self, ticket: WriteTicket) -> None:
        for key in ticket.keys:
            others = self._writes[key]
            others.remove(ticket)
            if not others:
                del self._writes[key]
            self._dirty(key)

    def fill_started(self, key: ItemKey, since: int = 0) -> FillTicket:
        ticket = FillTicket(key, clean=key not in self._writes, since=since)
        self._fills.setdefault(key, []).append(ticket)
        return ticket

    def fill_finished(self, ticket: FillTicket) -> bool:
        """Whether the fill may be installed."""
        fills = self._fills[ticket.key]
        fills.remove(ticket)
        if not fills:
            del self._fills[ticket.key]
        return ticket.clean

    def _dirty(self, key: ItemKey) -> None:
        for fill in self._fills.get(key, ()):
            fill.clean = False

    @property
    def idle(self) -> bool:
        return not self._writes and not self._fills
