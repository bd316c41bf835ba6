"""The change channel between workers: a hub in the supervisor, a link in each worker.

A worker publishes each change it makes to its caches' truth (:mod:`daxproxy.service.coherence`
says what a change is) on its :class:`ChangeLink`; the :class:`ChangeHub` relays every
message from one worker to every other connected worker, in the order received, over a
Unix socket. The hub never reads a message: it moves frames.

Framing: each frame is a 4-byte big-endian length and that many bytes. A frame whose first
byte is below ``0x20`` is the channel's own (hello, welcome, reset, bye); any other is a
change, handed to the link's owner as it came (changes are JSON, so they start with ``[``).

- A link says hello (its worker number) when it connects; the hub answers welcome once the
  link is registered, so every change relayed after that reaches it. Only a welcomed link
  is *live*: its owner caches only while it is.
- Nothing blocks on a slow worker: the hub writes without waiting, and a worker whose
  unsent backlog passes ``max_backlog_bytes`` is disconnected. Its owner then drops its
  caches and serves without them until the link is back (the link reconnects by itself,
  backing off from 10 ms to 1 s), and drops them again when it is, since it may have missed
  changes meanwhile.
- A worker may have published changes the others never got: the hub dropped its unread
  bytes when it cut it off, or it left without saying bye (it died with its last frames
  unsent), or it published while its link was down. For each, the others are told *reset*
  (the hub's, or the link's own on its return) and drop their caches: no worker serves what
  it may have missed.

:meth:`ChangeLink.publish` never blocks and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from typing import Protocol, cast

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 16 << 20  # a longer frame is garbage: the connection is cut
DEFAULT_MAX_BACKLOG_BYTES = 4 << 20
# The channel's own frames (a change starts with a byte of at least 0x20).
HELLO = b"\x01"  # link -> hub, first: followed by the worker's number in ASCII
WELCOME = b"\x02"  # hub -> link, first: registered, every later change reaches it
RESET = b"\x03"  # either way: changes may have been lost, drop the caches
BYE = b"\x04"  # link -> hub, last: leaving cleanly, nothing unsent
_CONTROL = 0x20
# A link's reconnection: first try at once, then back off to this.
RECONNECT_FIRST = 0.01
RECONNECT_MAX = 1.0
WELCOME_TIMEOUT = 5.0


class ChannelError(Exception):
    """The peer broke the framing."""


def frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Bytes in, whole frames out (sans-IO)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads of the frames ``data`` completes; raises ChannelError on garbage."""
        buffer = self._buffer
        buffer += data
        payloads: list[bytes] = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                raise ChannelError(f"a frame of {length} bytes")
            end = start + _LENGTH.size + length
            if end > len(buffer):
                break
            payloads.append(bytes(buffer[start + _LENGTH.size : end]))
            start = end
        del buffer[:start]
        return payloads


def is_control(payload: bytes) -> bool:
    return not payload or payload[0] < _CONTROL


# The hub ------------------------------------------------------------------------------


class ChangeHub:
    """Runs in the supervisor's event loop. Relays every message from one worker to every
    other connected worker, in the order received. Never blocks on a slow worker: a worker
    whose unsent backlog passes max_backlog_bytes is disconnected (it then drops its caches).
    """

    def __init__(self, path: str, *, max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES) -> None:
        self.path = path
        self.max_backlog_bytes = max_backlog_bytes
        self._server: asyncio.AbstractServer | None = None
        self._peers: list[_HubPeer] = []
        self.relayed = 0  # change frames received, each relayed to every other peer
        self.cut_off = 0  # peers disconnected for their backlog

    async def start(self) -> None:
        """Listen on the Unix socket at ``path`` (only the owner may connect)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _HubPeer(self), self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for peer in list(self._peers):
            peer.abort(reset_others=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    @property
    def peers(self) -> int:
        return len(self._peers)

    def _joined(self, peer: _HubPeer) -> None:
        self._peers.append(peer)

    def _left(self, peer: _HubPeer, *, reset_others: bool) -> None:
        if peer in self._peers:
            self._peers.remove(peer)
            if reset_others:
                self.send_others(peer, frame(RESET))

    def send_others(self, sender: _HubPeer, data: bytes) -> None:
        for peer in list(self._peers):
            if peer is sender:
                continue
            if peer.backlog() + len(data) > self.max_backlog_bytes:
                self.cut_off += 1
                log.warning(
                    "worker %s fell %d bytes behind on the change channel: disconnected "
                    "(it drops its caches until it is back)",
                    peer.worker,
                    peer.backlog(),
                )
                peer.abort(reset_others=True)
            else:
                peer.write(data)


class _HubPeer(asyncio.Protocol):
    """One worker's connection to the hub."""

    def __init__(self, hub: ChangeHub) -> None:
        self._hub = hub
        self._transport: asyncio.Transport | None = None
        self._reader = FrameReader()
        self.worker = "?"
        self._said_bye = False
        self._aborted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._hub._joined(self)
        self._transport.write(frame(WELCOME))

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self._reader.feed(data)
        except ChannelError as exc:
            log.warning(
                "worker %s broke the change channel's framing (%s): disconnected", self.worker, exc
            )
            self.abort(reset_others=True)
            return
        relay: list[bytes] = []
        for payload in payloads:
            if not is_control(payload):
                relay.append(frame(payload))
                self._hub.relayed += 1
            elif payload[:1] == HELLO:
                self.worker = payload[1:].decode("ascii", "replace")
            elif payload[:1] == RESET:
                relay.append(frame(RESET))
            elif payload[:1] == BYE:
                self._said_bye = True
        if relay:
            self._hub.send_others(self, b"".join(relay))

    def connection_lost(self, exc: Exception | None) -> None:
        # Bytes it sent that the hub had not read are gone when the hub cut it off; one that
        # left without saying bye may have died with changes unsent.
        self._hub._left(self, reset_others=not self._said_bye and not self._aborted)

    def backlog(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def abort(self, *, reset_others: bool) -> None:
        """Cut the connection at once, dropping what is unsent (and unread)."""
        if self._aborted:
            return
        self._aborted = True
        self._hub._left(self, reset_others=reset_others)
        if self._transport is not None:
            self._transport.abort()


# The link ----------------------------------------------------------------------------


class Receiver(Protocol):
    """A link's owner: what it is told."""

    def apply(self, payload: bytes) -> None:
        """Another worker's change, as it published it."""

    def lost(self) -> None:
        """The link is down: drop the caches and store nothing until :meth:`restored`."""

    def restored(self) -> None:
        """The link is live again: drop the caches (changes may have been missed) and
        cache again."""

    def missed(self) -> None:
        """Changes another worker made may have been lost: drop the caches."""


class ChangeLink:
    """A worker's end: publish is non-blocking and never raises; on connection loss it
    tells its owner (who drops its caches and serves without them until reconnected)
    and reconnects."""

    def __init__(
        self, path: str, worker: int, *, max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES
    ) -> None:
        self.path = path
        self.worker = worker
        self.max_backlog_bytes = max_backlog_bytes
        self._owner: Receiver | None = None
        self._transport: asyncio.Transport | None = None
        self._live = False
        self._welcomed: asyncio.Future[None] | None = None
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._started = False  # welcomed once: from then on a lost link reconnects
        # Published while not live: the others are told to reset when the link is back.
        self._unsent = False

    @classmethod
    async def connect(cls, path: str, worker: int) -> ChangeLink:
        """A live link to the hub at ``path``; raises OSError when there is none."""
        link = cls(path, worker)
        await link._open()
        return link

    @property
    def live(self) -> bool:
        return self._live

    def attach(self, owner: Receiver) -> None:
        """Tell ``owner`` of every change from now on (before: none, nothing is cached),
        and at once when the link is already down."""
        self._owner = owner
        if not self._live:
            owner.lost()

    def publish(self, payload: bytes) -> None:
        """Send a change to every other worker, without waiting."""
        transport = self._transport
        if not self._live or transport is None or transport.is_closing():
            self._unsent = True
            return
        try:
            transport.write(frame(payload))
            if transport.get_write_buffer_size() > self.max_backlog_bytes:
                log.warning("the change channel's hub fell behind; reconnecting")
                transport.abort()
        except Exception:  # never the writer's problem
            log.exception("publishing a change failed")
            self._unsent = True
            transport.abort()

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(frame(BYE))
            transport.close()
        self._live = False

    # Connection ------------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._welcomed = loop.create_future()
        transport, _ = await loop.create_unix_connection(lambda: _LinkProtocol(self), self.path)
        try:
            async with asyncio.timeout(WELCOME_TIMEOUT):
                await asyncio.shield(self._welcomed)
        except BaseException:
            self._welcomed = None  # no one waits for it any more
            transport.abort()
            raise

    def _connected(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        transport.write(frame(HELLO + str(self.worker).encode()))

    def _received(self, payload: bytes) -> None:
        if not is_control(payload):
            if self._owner is not None:
                self._owner.apply(payload)
        elif payload == WELCOME:
            self._welcome()
        elif payload == RESET and self._owner is not None:
            self._owner.missed()

    def _welcome(self) -> None:
        self._live = self._started = True
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_result(None)
        if self._unsent:
            self._unsent = False
            self.publish(RESET)
        if self._owner is not None:
            self._owner.restored()

    def _disconnected(self, transport: asyncio.Transport) -> None:
        if transport is not self._transport:
            return
        was_live, self._live, self._transport = self._live, False, None
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(ConnectionError("the hub closed the change channel"))
        if self._closing or not self._started:
            return
        if was_live and self._owner is not None:
            self._owner.lost()
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.0
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, RECONNECT_FIRST), RECONNECT_MAX)
            try:
                await self._open()
            except (OSError, TimeoutError, ConnectionError):
                continue
            log.info("the change channel is back")
            return


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, link: ChangeLink) -> None:
        self._link = link
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._link._connected(self._transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        try:
            payloads = self._reader.feed(data)
        except ChannelError:
            log.warning("the change channel's hub broke the framing; reconnecting")
            self._transport.abort()
            return
        for payload in payloads:
            try:
                self._link._received(payload)
            except Exception:  # a change it cannot apply: assume it missed it
                log.exception("applying a change from another worker failed; caches dropped")
                if self._link._owner is not None:
                    self._link._owner.missed()

    def connection_lost(self, exc: Exception | None) -> None:
        assert self._transport is not None
        self._link._disconnected(self._transport)
