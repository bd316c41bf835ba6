"""The port of a multi-worker proxy, checked and held by the supervisor.

:func:`reserve` runs before any worker starts. It resolves ``host`` as the server would
(every address it names), checks that nothing listens on ``port`` at any of them (a plain
bind, as a single process binds: a port taken, by another daxproxy too, raises the same
:class:`OSError` as today), then binds one socket per address with ``SO_REUSEPORT`` and
keeps them bound, without listening, for as long as the supervisor runs. Each worker then
listens on the same address and port with ``SO_REUSEPORT`` and the kernel spreads new
connections over the workers; a bound socket that does not listen receives none, and it
keeps the port ours while a worker restarts. Port 0 picks one free port for all addresses.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class Reservation:
    """The port every worker listens on, held by bound sockets until :meth:`close`."""

    port: int
    sockets: list[socket.socket]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def reserve(host: str, port: int) -> Reservation:
    """Raises :class:`OSError` when an address cannot be bound (taken, not ours)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((info[0], info[4][0]) for info in infos))
    held: list[socket.socket] = []
    try:
        for family, address in addresses:
            probe = _socket(family, reuse_port=False)
            try:
                probe.bind((address, port))
                port = port or probe.getsockname()[1]
            finally:
                probe.close()
            sock = _socket(family, reuse_port=True)
            held.append(sock)
            sock.bind((address, port))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return Reservation(port, held)


def _socket(family: int, *, reuse_port: bool) -> socket.socket:
    """A stream socket with the options asyncio's ``create_server`` sets."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock
