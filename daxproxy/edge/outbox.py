"""Answers written together at the next turn of the loop: one wake-up of a client, not many.

Writing an answer to a client's socket wakes the client if it sleeps waiting for one. On a
virtual machine that wake-up (an interrupt to the client's CPU) is paid by the writer, in
the kernel: with many connections it was about a sixth of a cache hit's CPU here. A turn of
the loop reads several connections' requests; written as each is answered, each answer may
wake its client again; written one after another at the end of the turn, the first wakes
the client and the rest find it awake.

:class:`Outbox` is shared by the connections of one server (one loop). Its contract:

- :meth:`Outbox.write` writes the first answer of a turn of the loop at once (a lone
  request waits for nothing); the later ones of the same turn are kept, in order, and
  written by one callback (``loop.call_soon``) that runs before the loop next reads.
- :meth:`Outbox.flush` writes what is kept now. A connection calls it before it writes to,
  or closes, its transport other than through :meth:`Outbox.write` (a ``100 Continue``, a
  large answer in two writes, a close), so that every connection's bytes stay in order.
- Kept bytes are bounded (``limit``): past it the outbox writes everything at once, so
  the transports' own flow control (``pause_writing``) sees each answer before many more
  are made; a connection whose transport is closing gets nothing more.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

LIMIT = 256 * 1024  # bytes kept before the outbox writes them at once


class Outbox:
    __slots__ = ("_kept", "_kept_bytes", "_limit", "_loop", "_turn")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._kept: list[tuple[asyncio.Transport, bytes]] = []
        self._kept_bytes = 0
        self._turn = False  # an answer was written in this turn of the loop

    def write(self, transport: asyncio.Transport, data: bytes) -> None:
        """``data`` on ``transport``: now if it is this turn's first, else with the turn's end."""
        if not self._turn:
            self._turn = True
            self._loop.call_soon(self._next_turn)
            transport.write(data)
            return
        self._kept.append((transport, data))
        self._kept_bytes += len(data)
        if self._kept_bytes > self._limit:
            self.flush()

    def flush(self) -> None:
        """Write what is kept, in the order it came."""
        kept = self._kept
        if not kept:
            return
        self._kept = []
        self._kept_bytes = 0
        for transport, data in kept:
            if not transport.is_closing():
                try:
                    transport.write(data)
                except Exception:  # one broken transport does not cost the others theirs
                    log.exception("fault while writing an answer")
                    transport.abort()

    def _next_turn(self) -> None:
        self._turn = False
        self.flush()
