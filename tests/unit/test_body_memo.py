"""The GetItem body memo's bound (service/body_memo.py): in bytes, since a body is as long
as its sender makes it, each body charged its length and ENTRY_BYTES, and every charge
given back when the body is forgotten. The memo's answers are tested through the proxy in
test_fast_path.py and tests/unit/edge/test_ready_hit.py."""

from __future__ import annotations

import pytest

from daxproxy.core.cache import ItemCache
from daxproxy.service import body_memo
from daxproxy.service.body_memo import ENTRY_BYTES, BodyMemo


class Tables:
    """The registry as the memo reads it: a table's info while it is known."""

    def __init__(self) -> None:
        self.infos: dict[str, object] = {"t": object()}

    def known(self, table: str) -> object | None:
        return self.infos.get(table)


def memo_of(tables: Tables) -> BodyMemo:
    return BodyMemo(ItemCache(10_000_000, None, lambda: 0.0), tables)  # type: ignore[arg-type]


def body(n: int, spaces: int = 0) -> bytes:
    return b'{"TableName":"t",%s"Key":{"pk":{"S":"%d"}}}' % (b" " * spaces, n)


def remember(memo: BodyMemo, tables: Tables, sent: bytes) -> None:
    memo.remember(sent, "t", tables.infos["t"], ("arn", sent, None))  # type: ignore[arg-type]


def charges(memo: BodyMemo) -> int:
    return sum(len(sent) + ENTRY_BYTES for sent in memo._entries)


def test_each_body_is_charged_its_length_and_what_is_kept_with_it_once() -> None:
    tables = Tables()
    memo = memo_of(tables)
    for n in range(5):
        remember(memo, tables, body(n, spaces=n * 100))
    remember(memo, tables, body(3, spaces=300))  # remembered again: charged already
    assert len(memo._entries) == 5
    assert memo.bytes == charges(memo) == sum(len(body(n, n * 100)) + ENTRY_BYTES for n in range(5))


def test_long_bodies_are_bounded_by_their_bytes_least_recent_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound that counted bodies let 8,192 bodies of any length stay: it is in bytes."""
    monkeypatch.setattr(body_memo, "MEMO_BYTES", 10 * ENTRY_BYTES + 20_000)
    tables = Tables()
    memo = memo_of(tables)
    for n in range(20):
        remember(memo, tables, body(n, spaces=5_000))
        assert memo.bytes == charges(memo) <= body_memo.MEMO_BYTES
    kept = list(memo._entries)
    assert kept == [body(n, spaces=5_000) for n in range(16, 20)]  # the newest four


def test_a_body_longer_than_the_whole_bound_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(body_memo, "MEMO_BYTES", 3 * ENTRY_BYTES)
    tables = Tables()
    memo = memo_of(tables)
    remember(memo, tables, body(1))
    remember(memo, tables, body(2, spaces=3 * ENTRY_BYTES))
    assert list(memo._entries) == [body(1)]  # the short one is not forgotten for it
    assert memo.bytes == charges(memo)


@pytest.mark.parametrize("way", ["remembered", "ready"])
def test_a_body_forgotten_because_its_table_changed_gives_back_its_charge(way: str) -> None:
    tables = Tables()
    memo = memo_of(tables)
    remember(memo, tables, body(1))
    tables.infos["t"] = object()  # the table learned anew: its bodies are read again
    remember(memo, tables, body(2))
    assert getattr(memo, way)(body(1)) is None
    assert list(memo._entries) == [body(2)]
    assert memo.bytes == charges(memo) == len(body(2)) + ENTRY_BYTES
