"""ItemReader fed an item in many pieces: the same items, and work linear in the bytes fed."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from daxproxy.dax import cbor

KIB = 1024
MIB = 1 << 20


def _rows(size: int) -> list[dict[str, Any]]:
    """A BatchWriteItem's worth of ~1 KB items, about ``size`` bytes in CBOR."""
    blob = bytes(range(256)) * 4
    return [{"pk": f"user-{i}", "sk": i, "data": blob[: 900 + i % 64]} for i in range(size // 960)]


def _feed_in_pieces(reader: cbor.ItemReader, data: bytes, piece: int) -> Any:
    """Feeds ``data`` a piece at a time, asking for the item after each: it must come
    with the last piece and not before."""
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    for part in pieces[:-1]:
        reader.feed(part)
        with pytest.raises(cbor.NeedMore):
            reader.next()
    reader.feed(pieces[-1])
    return reader.next()


@pytest.mark.parametrize("piece", [16 * KIB, 64 * KIB])
def test_a_multi_mib_item_in_small_pieces_is_copied_a_bounded_number_of_times(piece: int) -> None:
    """Each piece appended where the item grows, the whole copied once for the decoder: the
    bytes copied stay within twice the item however many pieces it comes in (rebuilding the
    unread bytes on every feed copies them ~len/(2*piece) times over: 128 times for this
    4 MiB item in 16 KiB pieces)."""
    rows = _rows(4 * MIB)
    data = cbor.dumps(rows)
    reader = cbor.ItemReader(max_bytes=8 * MIB)
    assert _feed_in_pieces(reader, data, piece) == rows
    assert reader.buffered == 0
    size = len(data)
    assert reader.copied <= 2 * size


def test_whole_items_fed_one_per_read_are_never_copied() -> None:
    """The common case: one small request per read, decoded from the bytes as they came."""
    items = [1, 263244906, b"bench-items", b"customer#1234", {3: 0}]
    reader = cbor.ItemReader(max_bytes=MIB)
    for _ in range(100):
        reader.feed(b"".join(cbor.dumps(item) for item in items))
        assert [reader.next() for _ in items] == items
        assert reader.buffered == 0
    assert reader.copied == 0


def test_buffered_and_peek_bytes_follow_the_unread_bytes_as_they_move() -> None:
    """Whole items read in place, the rest of a cut item moved to the front of a bytearray
    and grown there, then made whole with the start of the next item behind it."""
    big = cbor.dumps(["x" * 1000, b"y" * 3000])
    after = cbor.dumps({"next": 1})
    stream = cbor.dumps(7) + cbor.dumps("abc") + big + after
    reader = cbor.ItemReader(max_bytes=MIB)
    fed = 0

    def feed(n: int) -> None:
        nonlocal fed
        reader.feed(stream[fed : fed + n])
        fed += n

    def unread_from(start: int) -> None:
        assert reader.buffered == fed - start
        assert reader.peek_bytes(6) == stream[start : min(start + 6, fed)]
        assert type(reader.peek_bytes(6)) is bytes
        assert reader.peek_bytes(fed) == stream[start:fed]

    feed(100)
    unread_from(0)
    assert [reader.next(), reader.next()] == [7, "abc"]
    big_at = len(cbor.dumps(7) + cbor.dumps("abc"))
    with pytest.raises(cbor.NeedMore):
        reader.next()
    unread_from(big_at)
    for _ in range(20):
        feed(150)
        unread_from(big_at)
        with pytest.raises(cbor.NeedMore):
            reader.next()
    feed(len(stream) - fed - 3)  # the big item whole, and the next item but its last 3 bytes
    unread_from(big_at)
    assert reader.next() == ["x" * 1000, b"y" * 3000]
    unread_from(big_at + len(big))
    with pytest.raises(cbor.NeedMore):
        reader.next()
    feed(3)
    unread_from(big_at + len(big))
    assert reader.next() == {"next": 1}
    assert reader.buffered == 0
    assert reader.peek_bytes(6) == b""


def test_items_cut_short_and_completed_across_many_feeds_of_every_size() -> None:
    """Random cuts through a stream of items of every kind, large and small: the same items
    in the same order, each as soon as its last byte came and not before."""
    rng = random.Random(7)
    items: list[Any] = [
        _rows(200 * KIB),
        {"a": [1, -2, 3.5, None, True], "b": b"\x00" * 70_000},
        "t" * 50_000,
        Decimal("-1.25E+7"),
        [[[[[b"deep"]]]]],
        0,
    ] * 3
    encoded = [cbor.dumps(item) for item in items]
    stream = b"".join(encoded)
    ends = [sum(map(len, encoded[: i + 1])) for i in range(len(encoded))]
    reader = cbor.ItemReader(max_bytes=MIB)
    got: list[Any] = []
    fed = 0
    while fed < len(stream):
        n = rng.choice([1, 2, 7, 100, 1500, 16 * KIB, 64 * KIB, 300 * KIB])
        reader.feed(stream[fed : fed + n])
        fed = min(fed + n, len(stream))
        while True:
            try:
                got.append(reader.next())
            except cbor.NeedMore:
                break
        assert len(got) == sum(1 for end in ends if end <= fed)
        assert reader.buffered == fed - (ends[len(got) - 1] if got else 0)
    assert got == items
    size = len(stream)
    assert reader.copied <= 3 * size


def _bad_text_item() -> bytes:
    """An array of 100 KB whose last string is not UTF-8: well-formed in its heads only."""
    return b"\x9f" + cbor.dumps("a" * 1000) * 100 + b"\x62\xff\xfe" + b"\xff"


@pytest.mark.parametrize("piece", [1000, 64 * KIB])
def test_a_bad_item_in_pieces_is_malformed_as_it_is_whole(piece: int) -> None:
    data = _bad_text_item()
    whole = cbor.ItemReader(max_bytes=MIB)
    whole.feed(data)
    with pytest.raises(cbor.Malformed) as at_once:
        whole.next()
    reader = cbor.ItemReader(max_bytes=MIB)
    with pytest.raises(cbor.Malformed) as in_pieces:
        _feed_in_pieces(reader, data, piece)
    assert str(in_pieces.value) == str(at_once.value)
    assert "not CBOR" in str(at_once.value)


def test_an_item_grown_in_place_past_max_bytes_is_refused_once_scanned_past_it() -> None:
    data = cbor.dumps(_rows(300 * KIB))
    reader = cbor.ItemReader(max_bytes=200 * KIB)
    with pytest.raises(cbor.Malformed, match=f"longer than {200 * KIB} bytes"):
        for start in range(0, len(data), 4 * KIB):
            reader.feed(data[start : start + 4 * KIB])
            with pytest.raises(cbor.NeedMore):
                reader.next()
    assert start < 204 * KIB  # refused within a piece of the limit, not at the item's end
