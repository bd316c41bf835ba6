"""The CPU of framing a DAX connection's bytes: ``python -m bench.dax_feed``.

Contract: no sockets, no server; :class:`daxproxy.dax.cbor.ItemReader` and
:class:`daxproxy.dax.session.Session` are fed prepared bytes, and the table gives CPU time
(``time.process_time``, the best of ``--repeats`` runs):

- ``item``: one large item (an array of ~1 KB maps, as a BatchWriteItem's items) of 4 MB
  and 16 MB fed to a reader in pieces of 16 KiB and 64 KiB, as TCP delivers them, asking
  for the item after each piece; and, for scale, the same item fed in one piece;
- ``small``: 100,000 getItem frames (~60 bytes, :func:`bench.replay.get_item_frame`) fed
  to a session one per read, after its preamble.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.replay import dax_opening, get_item_frame
from daxproxy.dax import cbor
from daxproxy.dax.session import Session

MB = 1_000_000
KIB = 1024


def big_item(size: int) -> bytes:
    """One CBOR item of about ``size`` bytes: an array of maps of about 1 KB each."""
    blob = bytes(range(256)) * 4
    rows = [{"pk": f"user-{i}", "sk": i, "data": blob[: 900 + i % 64]} for i in range(size // 960)]
    return cbor.dumps(rows)


def feed_item(data: bytes, piece: int) -> None:
    reader = cbor.ItemReader(max_bytes=len(data))
    for start in range(0, len(data), piece):
        reader.feed(data[start : start + piece])
        try:
            reader.next()
        except cbor.NeedMore:
            continue
        return
    raise AssertionError("the item never completed")


def feed_frames(opening: bytes, frame: bytes, count: int) -> None:
    session = Session(max_bytes=1 << 20)
    session.receive(opening)
    receive = session.receive
    for _ in range(count):
        receive(frame)


def best(run: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def measure_items(repeats: int) -> None:
    for size in (4 * MB, 16 * MB):
        data = big_item(size)
        whole = best(lambda d=data: feed_item(d, len(d)), repeats)
        print(f"item {len(data) / MB:5.1f} MB in one piece:   {whole * 1000:7.1f} ms")
        for piece in (16 * KIB, 64 * KIB):
            cpu = best(lambda d=data, p=piece: feed_item(d, p), repeats)
            where = f"{len(data) / MB:5.1f} MB in {piece // KIB:2d} KiB pieces"
            print(f"item {where}: {cpu * 1000:7.1f} ms")


def measure_frames(repeats: int, count: int) -> None:
    frame = get_item_frame("bench-items", "customer#00001234#orders#2026-12")
    cpu = best(lambda: feed_frames(dax_opening(b"s" * 16), frame, count), repeats)
    print(
        f"{count} getItem frames of {len(frame)} bytes, one per read: "
        f"{cpu * 1000:7.1f} ms ({cpu / count * 1e6:.2f} us each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--only", choices=("item", "small"), help="one of the two measures")
    args = parser.parse_args()
    if args.only != "small":
        measure_items(args.repeats)
    if args.only != "item":
        measure_frames(args.repeats, args.count)


if __name__ == "__main__":
    main()
