"""One DAX connection's incoming bytes, framed: the preamble, then requests.

A client opens with a preamble of five CBOR items: the text ``"J7yne5G"`` (so the
connection's first bytes are ``gJ7yne5G``: :data:`MAGIC`, which tells DAX from HTTP), an
int 0 (no layering), a session id (bytes from the Python and JS clients, decimal text from
Go's, or null), a map of client properties (``{"UserAgent": ...}``) and an int 0. The
server answers nothing. Then come requests: ``1``, a method id, and that method's fixed
number of items (:mod:`daxproxy.dax.methods`).

:class:`Session` is fed bytes (:meth:`Session.receive`) and returns the requests completed
by them, in order; it never blocks and never writes. Bytes that break these rules (a wrong
preamble, a service other than 1, an unknown method id, an item past ``max_bytes`` or not
CBOR) raise :class:`ProtocolError`, after which the session is dead: there is no way to
find the next request in a broken stream, so the caller closes the connection and logs the
reason (which names no values, only what was wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daxproxy.dax import cbor
from daxproxy.dax.methods import METHODS, SERVICE, Method

MAGIC = b"gJ7yne5G"
_MAGIC_TEXT = "J7yne5G"
_PREAMBLE_ITEMS = 5


class ProtocolError(Exception):
    """The connection broke DAX's framing; it must be closed."""


@dataclass(frozen=True, slots=True)
class Request:
    method: Method
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Preamble:
    session: bytes | str | None
    user_agent: str | None


class Session:
    """The framing state of one connection (sans-IO)."""

    __slots__ = ("_items", "_reader", "preamble")

    def __init__(self, max_bytes: int) -> None:
        self._reader = cbor.ItemReader(max_bytes)
        self._items: list[Any] = []  # items of the preamble or request being read
        self.preamble: Preamble | None = None

    def receive(self, data: bytes) -> list[Request]:
        """The requests that ``data`` completes (none while the preamble is being read)."""
        reader = self._reader
        reader.feed(data)
        requests = []
        try:
            while reader.buffered:  # never a NeedMore raised just to learn the bytes ended
                if self.preamble is None:
                    if not self._read_preamble():
                        break
                    continue
                request = self._read_request()
                if request is None:
                    break
                requests.append(request)
        except cbor.Malformed as error:
            raise ProtocolError(str(error)) from None
        return requests

    def _next(self) -> bool:
        """Read one more item into ``_items``; False when it has not all arrived."""
        try:
            self._items.append(self._reader.next())
        except cbor.NeedMore:
            return False
        return True

    def _read_preamble(self) -> bool:
        if not self._items and not MAGIC.startswith(self._reader.peek_bytes(len(MAGIC))):
            raise ProtocolError("the connection does not open with DAX's preamble")
        while len(self._items) < _PREAMBLE_ITEMS:
            if not self._next():
                return False
            _check_preamble_item(len(self._items) - 1, self._items[-1])
        _, _, session, properties, _ = self._items
        self._items = []
        agent = properties.get("UserAgent")
        self.preamble = Preamble(session, agent if isinstance(agent, str) else None)
        return True

    def _read_request(self) -> Request | None:
        if not self._items:
            if not self._next():
                return None
            if self._items[0] != SERVICE or isinstance(self._items[0], bool):
                raise ProtocolError("a request for a service other than DAX's (1)")
        if len(self._items) == 1:
            if not self._next():
                return None
            method_id = self._items[1]
            if not isinstance(method_id, int) or method_id not in METHODS:
                raise ProtocolError("a request for an unknown method id")
        method = METHODS[self._items[1]]
        while len(self._items) < 2 + method.arity:
            if not self._next():
                return None
        request = Request(method, tuple(self._items[2:]))
        self._items = []
        return request


def _check_preamble_item(index: int, item: Any) -> None:
    """Each preamble item as soon as it arrives: a stranger is turned away at once."""
    if index == 0 and item != _MAGIC_TEXT:
        raise ProtocolError("the connection does not open with DAX's preamble")
    if index in (1, 4) and (item != 0 or isinstance(item, bool)):
        raise ProtocolError("the preamble asks for layering or types DAX does not have")
    if index == 2 and not isinstance(item, bytes | str | None):
        raise ProtocolError("the preamble's session id is not bytes, text or null")
    if index == 3 and not isinstance(item, dict):
        raise ProtocolError("the preamble's client properties are not a map")
