"""The real Python DAX client (``amazon-dax-client``) over a loopback socket, no server.

:func:`drive` queues the reply bytes a test wrote on the far end of a TCP connection, runs
one call of the client's own ``DaxClient`` on the near end, and returns what the call gave
(or raised) and every byte the client sent: its preamble, authorizeConnection, requests.
The client is strict request/response on one socket, so the replies are read in order.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from amazondax.DaxClient import DaxClient
from amazondax.Tube import Tube, TubePool
from botocore.credentials import Credentials

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


class _OneSocket(TubePool):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock: socket.socket | None = sock

    def _alloc(self) -> Tube:
        assert self._sock is not None, "the client asked for a second connection"
        sock, self._sock = self._sock, None
        return Tube(sock, self._session_version, lambda: CREDENTIALS, "us-east-1")


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a loopback TCP connection (the client keeps endpoints of its family)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


def drive(call: Callable[[DaxClient], Any], replies: bytes = b"") -> tuple[Any, bytes]:
    """``call``'s result (or the exception it raised) and the bytes the client sent."""
    near, far = _tcp_pair()
    near.settimeout(5)
    far.settimeout(5)
    far.sendall(replies)
    client = DaxClient(_OneSocket(near))
    try:
        result = call(client)
    except Exception as error:
        result = error
    finally:
        client.close()
        near.close()
    sent = bytearray()
    while chunk := far.recv(65536):
        sent += chunk
    far.close()
    return result, bytes(sent)
