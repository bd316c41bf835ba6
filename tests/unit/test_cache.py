"""The item cache's storage and its write tracking, with an injected clock."""

from __future__ import annotations

import pytest

from daxproxy.core.cache import (
    ENTRY_OVERHEAD,
    MAX_DROPPED_TABLES,
    NOT_FOUND,
    Eviction,
    ItemCache,
    WriteTracker,
    entry_size,
)
from daxproxy.core.keys import ItemKey


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def k(n: int, table: str = "t") -> ItemKey:
    return (table, f"key-{n}", None)


ITEM = b'{"pk":{"S":"x"},"v":{"S":"' + b"v" * 100 + b'"}}'


def cache(max_bytes: int = 1_000_000, ttl: float | None = 60.0) -> tuple[ItemCache, FakeClock]:
    clock = FakeClock()
    return ItemCache(max_bytes, ttl, clock), clock


def test_get_after_put_and_negative_entries() -> None:
    c, _ = cache()
    assert c.get(k(1)) is None
    c.put(k(1), ITEM)
    c.put(k(2), NOT_FOUND)
    assert c.get(k(1)) == ITEM
    assert c.get(k(2)) == NOT_FOUND
    assert (c.stats.hits, c.stats.misses) == (2, 1)


def test_entries_expire_at_the_ttl_and_reads_do_not_extend_it() -> None:
    c, clock = cache(ttl=10.0)
    c.put(k(1), ITEM)
    clock.now += 9.9
    assert c.get(k(1)) == ITEM
    clock.now += 0.1
    assert c.get(k(1)) is None
    assert c.stats.evicted[Eviction.TTL] == 1
    assert len(c) == 0 and c.bytes == 0


def test_a_write_restarts_the_clock() -> None:
    c, clock = cache(ttl=10.0)
    c.put(k(1), ITEM)
    clock.now += 8
    c.put(k(1), ITEM)
    clock.now += 8
    assert c.get(k(1)) == ITEM


def test_no_ttl_means_no_expiry() -> None:
    c, clock = cache(ttl=None)
    c.put(k(1), ITEM)
    clock.now += 10**9
    assert c.get(k(1)) == ITEM


def test_the_byte_budget_evicts_the_least_recently_used_first() -> None:
    size = entry_size(k(1), ITEM)
    c, _ = cache(max_bytes=3 * size)
    for n in (1, 2, 3):
        c.put(k(n), ITEM)
    assert c.get(k(1)) == ITEM  # 1 is now the most recently used; 2 the least
    c.put(k(4), ITEM)
    assert c.get(k(2)) is None
    assert [c.get(k(n)) is not None for n in (1, 3, 4)] == [True, True, True]
    assert c.bytes == 3 * size <= c.max_bytes
    assert c.stats.evicted[Eviction.SIZE] == 1
    assert c.stats.evicted_bytes == size


def test_sizes_count_the_overhead_and_replacing_an_entry_recounts() -> None:
    c, _ = cache()
    c.put(k(1), ITEM)
    assert c.bytes == ENTRY_OVERHEAD + len("key-1") + len(ITEM)
    c.put(k(1), NOT_FOUND)
    assert c.bytes == ENTRY_OVERHEAD + len("key-1")
    c.evict(k(1))
    assert c.bytes == 0 and len(c) == 0


def test_an_entry_larger_than_the_budget_is_not_kept() -> None:
    c, _ = cache(max_bytes=ENTRY_OVERHEAD + 10)
    c.put(k(1), ITEM)
    assert c.get(k(1)) is None and c.bytes == 0


def test_dropping_a_table_forgets_its_entries_only() -> None:
    c, _ = cache()
    c.put(k(1, "a"), ITEM)
    c.put(k(1, "b"), ITEM)
    c.drop_table("a")
    assert c.get(k(1, "a")) is None
    assert c.get(k(1, "b")) == ITEM
    c.put(k(1, "a"), NOT_FOUND)  # stored after the drop: kept
    assert c.get(k(1, "a")) == NOT_FOUND
    assert c.stats.evicted[Eviction.TABLE] == 1


def test_drop_all() -> None:
    c, _ = cache()
    for n in range(5):
        c.put(k(n), ITEM)
    c.drop_all()
    assert len(c) == 0 and c.bytes == 0


def test_a_fill_with_no_write_in_flight_is_installed() -> None:
    tracker = WriteTracker()
    fill = tracker.fill_started(k(1))
    assert tracker.fill_finished(fill) is True
    assert tracker.idle


@pytest.mark.parametrize(
    "order",
    [
        # A write starts during the fill, and may finish before or after it.
        ["fill", "write", "done-fill", "done-write"],
        ["fill", "write", "done-write", "done-fill"],
        # A write was already in flight when the fill began: its result may be older.
        ["write", "fill", "done-write", "done-fill"],
        ["write", "fill", "done-fill", "done-write"],
    ],
)
def test_a_fill_that_overlaps_a_write_is_not_installed(order: list[str]) -> None:
    tracker = WriteTracker()
    tickets: dict[str, object] = {}
    installed = None
    for step in order:
        if step == "fill":
            tickets["fill"] = tracker.fill_started(k(1))
        elif step == "write":
            tickets["write"] = tracker.write_started([k(1)])
        elif step == "done-fill":
            installed = tracker.fill_finished(tickets["fill"])  # type: ignore[arg-type]
        else:
            tracker.write_finished(tickets["write"])  # type: ignore[arg-type]
    assert installed is False
    assert tracker.idle


def test_writes_to_other_keys_do_not_spoil_a_fill() -> None:
    tracker = WriteTracker()
    fill = tracker.fill_started(k(1))
    tracker.write_finished(tracker.write_started([k(2)]))
    assert tracker.fill_finished(fill) is True


def test_a_write_finished_before_the_fill_began_does_not_spoil_it() -> None:
    tracker = WriteTracker()
    tracker.write_finished(tracker.write_started([k(1)]))
    assert tracker.fill_finished(tracker.fill_started(k(1))) is True


def test_overlapping_writes_to_one_key_are_contended() -> None:
    tracker = WriteTracker()
    first = tracker.write_started([k(1), k(2)])
    second = tracker.write_started([k(1), k(3)])
    assert first.contended == second.contended == {k(1)}
    tracker.write_finished(first)
    third = tracker.write_started([k(2)])  # the first is done: no overlap
    assert third.contended == set()
    tracker.write_finished(second)
    tracker.write_finished(third)
    assert tracker.idle


def test_a_write_naming_one_key_twice_is_not_contended_with_itself() -> None:
    tracker = WriteTracker()
    ticket = tracker.write_started([k(1), k(1)])
    assert ticket.contended == set()
    tracker.write_finished(ticket)
    assert tracker.idle


# Stale entries (stale_grace) --------------------------------------------------------------


def stale_cache(
    max_bytes: int = 1_000_000, ttl: float = 10.0, grace: float = 5.0
) -> tuple[ItemCache, FakeClock]:
    clock = FakeClock()
    return ItemCache(max_bytes, ttl, clock, stale_grace=grace), clock


def test_hit_gives_only_what_get_entry_would_and_counts_nothing_else() -> None:
    """The answer at once (ItemReads.cached) looks with hit(); GetItem then asks get_entry."""
    c, clock = stale_cache(ttl=10.0, grace=100.0)
    c.put(k(1), ITEM)
    c.put(k(2), ITEM)
    c.put(k(3), ITEM)
    assert c.hit(k(1)) == c.get_entry(k(1)) and (c.stats.hits, c.stats.misses) == (2, 0)
    assert c.hit(k(9)) is None
    c.drop_table("t")
    assert c.hit(k(2)) is None and len(c) == 3  # dropped: left for get_entry to remove
    c.put(k(4), ITEM)
    clock.now += 12.0
    assert c.hit(k(4)) is None and c.get_stale(k(4)) is not None  # expired, within the grace
    assert (c.stats.hits, c.stats.misses) == (2, 0) and len(c) == 4
    assert c.get_entry(k(2)) is None and c.stats.evicted[Eviction.TABLE] == 1


def test_an_expired_entry_is_a_miss_but_stays_stale_within_the_grace() -> None:
    c, clock = stale_cache(ttl=10.0, grace=5.0)
    c.put(k(1), ITEM)
    c.put(k(2), NOT_FOUND)
    assert c.get_stale(k(1)) == (ITEM, 0.0)  # fresh: given, not past its TTL
    clock.now += 12.0
    assert c.get(k(1)) is None and c.get(k(2)) is None
    assert c.get_stale(k(1)) == (ITEM, pytest.approx(2.0))
    assert c.get_stale(k(2)) == (NOT_FOUND, pytest.approx(2.0))
    assert len(c) == 2 and c.stats.evicted[Eviction.TTL] == 0
    assert (c.stats.hits, c.stats.misses) == (0, 2)  # get_stale counts neither
    clock.now += 3.0  # past TTL + grace
    assert c.get_stale(k(1)) is None
    assert c.get(k(1)) is None
    assert c.stats.evicted[Eviction.TTL] == 1 and len(c) == 1


def test_without_a_grace_nothing_is_stale_and_expired_entries_go_on_read() -> None:
    c, clock = cache(ttl=10.0)
    c.put(k(1), ITEM)
    assert c.get_stale(k(1)) is None
    clock.now += 10.0
    assert c.get(k(1)) is None
    assert c.get_stale(k(1)) is None and len(c) == 0


def test_a_fill_or_a_write_replaces_a_stale_entry_and_an_eviction_removes_it() -> None:
    c, clock = stale_cache(ttl=10.0, grace=5.0)
    c.put(k(1), ITEM)
    c.put(k(2), ITEM)
    clock.now += 11.0
    assert c.get(k(1)) is None
    c.put(k(1), NOT_FOUND)  # a write through the proxy: the new state, with a fresh TTL
    assert c.get(k(1)) == NOT_FOUND
    assert c.get_stale(k(1)) == (NOT_FOUND, 0.0)
    c.evict(k(2))  # a write that may have happened
    assert c.get_stale(k(2)) is None


def test_a_dropped_table_has_no_stale_entries() -> None:
    c, clock = stale_cache()
    c.put(k(1), ITEM)
    clock.now += 11.0
    c.drop_table("t")
    assert c.get_stale(k(1)) is None
    assert c.get(k(1)) is None
    assert len(c) == 0 and c.stats.evicted[Eviction.TABLE] == 1


def test_stale_entries_count_against_the_budget_and_lru_evicts_them() -> None:
    size = entry_size(k(1), ITEM)
    c, clock = stale_cache(max_bytes=2 * size)
    c.put(k(1), ITEM)
    c.put(k(2), ITEM)
    clock.now += 11.0
    assert c.get(k(1)) is None  # a miss leaves its LRU place alone
    assert c.bytes == 2 * size
    c.put(k(3), ITEM)
    assert c.get_stale(k(1)) is None  # the least recently used went first
    assert c.get_stale(k(2)) is not None
    assert c.bytes == 2 * size and c.stats.evicted[Eviction.SIZE] == 1


# Generations: drops retire fills; holds after writes whose outcome is unknown -----------


def test_a_fill_that_a_drop_of_its_table_overtook_is_refused() -> None:
    c, _ = cache()
    since = c.generation()
    c.drop_table("t")
    assert c.put(k(1), ITEM, since=since) is False
    assert c.get(k(1)) is None
    assert c.put(k(1), ITEM, since=c.generation()) is True  # a fill started after it
    assert c.get(k(1)) == ITEM


def test_a_drop_of_another_table_leaves_a_fill_alone() -> None:
    c, _ = cache()
    since = c.generation()
    c.drop_table("other")
    assert c.put(k(1), ITEM, since=since) is True
    assert c.get(k(1)) == ITEM


def test_drop_all_retires_every_fill_in_flight() -> None:
    c, _ = cache()
    since = c.generation()
    c.drop_all()
    assert c.put(k(1, "a"), ITEM, since=since) is False
    assert c.put(k(1, "b"), ITEM, since=since) is False
    assert len(c) == 0


def test_dropped_tables_are_bounded_and_forgetting_them_resurrects_nothing() -> None:
    c, _ = cache()
    c.put(k(1, "old"), ITEM)
    before = c.generation()
    c.drop_table("old")
    c.put(k(2, "old"), ITEM)  # stored after the drop: stays
    for n in range(MAX_DROPPED_TABLES):
        c.drop_table(f"gone-{n}")
    assert c.tracked_tables <= MAX_DROPPED_TABLES
    assert c.get(k(1, "old")) is None  # dead before: still dead
    assert c.get(k(2, "old")) == ITEM
    # A fill that started before the drops were forgotten cannot tell: it is refused.
    assert c.put(k(3, "old"), ITEM, since=before) is False
    assert c.put(k(3, "never-dropped"), ITEM, since=before) is False
    assert c.put(k(3, "old"), ITEM, since=c.generation()) is True


def test_a_held_key_stores_nothing_until_its_deadline() -> None:
    c, clock = cache()
    c.put(k(1), ITEM)
    c.hold([k(1)], 10.0)
    assert c.get(k(1)) is None  # evicted
    assert c.put(k(1), ITEM) is False  # a write's result
    assert c.put(k(1), ITEM, since=c.generation()) is False  # a fill
    assert c.put(k(2), ITEM) is True  # other keys are not held
    clock.now += 9.9
    assert c.put(k(1), ITEM) is False
    clock.now += 0.1
    assert c.put(k(1), ITEM) is True
    assert c.get(k(1)) == ITEM


def test_a_held_table_stores_nothing_until_its_deadline() -> None:
    c, clock = cache()
    c.put(k(1), ITEM)
    c.hold(["t"], 5.0)
    assert c.get(k(1)) is None  # its entries are dropped
    assert c.put(k(2), ITEM) is False
    assert c.put(k(2, "other"), ITEM) is True
    clock.now += 5.0
    assert c.put(k(2), ITEM) is True


def test_a_hold_ends_at_its_own_deadline_whatever_the_order() -> None:
    c, clock = cache()
    c.hold([k(1)], 10.0)
    c.hold([k(2)], 1.0)  # shorter, held after
    clock.now += 1.0
    assert c.put(k(2), ITEM) is True
    assert c.put(k(1), ITEM) is False
    c.hold([k(1)], 1.0)  # held again: the new deadline counts
    clock.now += 1.0
    assert c.put(k(1), ITEM) is True
