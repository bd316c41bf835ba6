"""The change channel between workers (daxproxy/workers/channel.py): a real hub and real
links over a Unix socket in one event loop. Each wait is for an event the test names (a
message received, a link lost or back), never a fixed sleep."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable

import pytest

from daxproxy.workers import channel
from daxproxy.workers.channel import ChangeHub, ChangeLink, ChannelError, FrameReader, frame

PROMPTLY = 5.0  # what a test waits for happens within milliseconds; this bounds a hang


class Owner:
    """A link's owner that records what it is told."""

    def __init__(self) -> None:
        self.changes: list[bytes] = []
        self.events: list[str] = []
        self._changed = asyncio.Event()

    def apply(self, payload: bytes) -> None:
        self.changes.append(payload)
        self._changed.set()

    def lost(self) -> None:
        self._event("lost")

    def restored(self) -> None:
        self._event("restored")

    def missed(self) -> None:
        self._event("missed")

    def _event(self, name: str) -> None:
        self.events.append(name)
        self._changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(PROMPTLY):
            while not done():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def path() -> AsyncIterator[str]:
    directory = tempfile.mkdtemp(prefix="daxproxy-hub-")  # short: a socket path is < 108
    yield os.path.join(directory, "changes")
    shutil.rmtree(directory)


@pytest.fixture
async def hub(path: str) -> AsyncIterator[ChangeHub]:
    hub = ChangeHub(path)
    await hub.start()
    yield hub
    await hub.close()


async def linked(path: str, worker: int) -> tuple[ChangeLink, Owner]:
    link = await ChangeLink.connect(path, worker)
    owner = Owner()
    link.attach(owner)
    return link, owner


def test_frames_are_read_whatever_the_chunks_they_arrive_in() -> None:
    data = frame(b"[1]") + frame(b"") + frame(b"x" * 300)
    for size in (1, 2, 3, 5, 7, len(data)):
        reader = FrameReader()
        payloads: list[bytes] = []
        for start in range(0, len(data), size):
            payloads += reader.feed(data[start : start + size])
        assert payloads == [b"[1]", b"", b"x" * 300]


def test_a_frame_longer_than_any_change_is_refused() -> None:
    with pytest.raises(ChannelError):
        FrameReader().feed((channel.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


async def test_the_hub_relays_each_change_to_every_other_worker_in_order(
    hub: ChangeHub, path: str
) -> None:
    one, heard_by_one = await linked(path, 1)
    two, heard_by_two = await linked(path, 2)
    three, heard_by_three = await linked(path, 3)
    for n in range(100):
        one.publish(b'["%d"]' % n)
    two.publish(b'["two"]')
    expected = [b'["%d"]' % n for n in range(100)]
    await heard_by_three.until(lambda: len(heard_by_three.changes) == 101)
    assert heard_by_three.changes[:100] == expected  # in order (two's may come anywhere)
    await heard_by_two.until(lambda: len(heard_by_two.changes) == 100)
    assert heard_by_two.changes == expected
    await heard_by_one.until(lambda: len(heard_by_one.changes) == 1)
    assert heard_by_one.changes == [b'["two"]']  # never its own
    for link in (one, two, three):
        await link.close()
    assert not (heard_by_one.events or heard_by_two.events or heard_by_three.events)


async def test_a_worker_that_falls_behind_is_cut_off_and_comes_back(path: str) -> None:
    hub = ChangeHub(path, max_backlog_bytes=64 << 10)
    await hub.start()
    fast, _ = await linked(path, 1)
    slow, heard_by_slow = await linked(path, 2)
    other, heard_by_other = await linked(path, 3)
    assert slow._transport is not None
    slow._transport.pause_reading()  # its event loop is busy elsewhere
    change = b'["' + b"x" * 1000 + b'"]'
    async with asyncio.timeout(PROMPTLY):
        while not hub.cut_off:
            for _ in range(64):
                fast.publish(change)
            await asyncio.sleep(0)  # let the hub relay
    slow._transport.resume_reading()
    await heard_by_slow.until(lambda: heard_by_slow.events == ["lost", "restored"])
    assert slow.live
    # The others are told the cut-off worker's unread changes may be lost.
    await heard_by_other.until(lambda: "missed" in heard_by_other.events)
    slow.publish(b'["back"]')
    await heard_by_other.until(lambda: heard_by_other.changes[-1:] == [b'["back"]'])
    for link in (fast, slow, other):
        await link.close()
    await hub.close()


async def test_a_link_whose_hub_went_away_tells_its_owner_and_reconnects(path: str) -> None:
    hub = ChangeHub(path)
    await hub.start()
    link, owner = await linked(path, 1)
    await hub.close()
    await owner.until(lambda: owner.events == ["lost"])
    assert not link.live
    link.publish(b'["while down"]')  # never raises; the others will be told to reset
    # A new hub, with another worker already linked, appears at the path.
    hub = ChangeHub(path + ".new")
    await hub.start()
    other, heard_by_other = await linked(hub.path, 2)
    os.rename(hub.path, path)
    hub.path = path
    await owner.until(lambda: owner.events == ["lost", "restored"])
    await heard_by_other.until(lambda: heard_by_other.events == ["missed"])
    assert heard_by_other.changes == []  # the change itself was not kept
    await link.close()
    await other.close()
    await hub.close()


async def test_a_worker_leaving_without_saying_bye_makes_the_others_reset(
    hub: ChangeHub, path: str
) -> None:
    leaving, _ = await linked(path, 1)
    dying, _ = await linked(path, 2)
    staying, heard = await linked(path, 3)
    marker, _ = await linked(path, 4)
    await leaving.close()  # says bye: nothing of its is unsent
    assert dying._transport is not None
    dying._closing = True  # as a process that dies: no bye, no reconnection
    dying._transport.abort()
    async with asyncio.timeout(PROMPTLY):
        while hub.peers > 2:
            await asyncio.sleep(0.001)
    marker.publish(b'["after both left"]')  # relayed after any reset the hub sent
    await heard.until(lambda: heard.changes == [b'["after both left"]'])
    assert heard.events == ["missed"]  # once: for the one that died
    await staying.close()
    await marker.close()


async def test_an_owner_attached_to_a_link_already_down_is_told_at_once(path: str) -> None:
    hub = ChangeHub(path)
    await hub.start()
    link = await ChangeLink.connect(path, 1)
    await hub.close()
    async with asyncio.timeout(PROMPTLY):
        while link.live:
            await asyncio.sleep(0.001)
    owner = Owner()
    link.attach(owner)  # it must not cache as if the link were live
    assert owner.events == ["lost"]
    await link.close()


async def test_connecting_to_no_hub_fails_at_once(path: str) -> None:
    with pytest.raises(OSError):
        await ChangeLink.connect(path, 1)


async def test_the_hubs_socket_is_its_owners_alone(hub: ChangeHub, path: str) -> None:
    assert os.stat(path).st_mode & 0o777 == 0o600
