"""A TCP forwarder on a loopback port: each connection it accepts is relayed, both ways and
byte for byte, to a target port, and counted. It stands for a NAT or a container's port map
in front of the proxy (``dax_endpoint``). Threads, so synchronous clients can use it from
the test itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpForwarder:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so that close() is seen without a connection
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._target = 0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def start(self, target_port: int) -> TcpForwarder:
        self._target = target_port
        self._spawn(self._accept)
        return self

    def close(self) -> None:
        self._stop.set()
        for each in self._sockets:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)
        for each in [self._listener, *self._sockets]:
            each.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                near, _ = self._listener.accept()
            except TimeoutError:
                continue
            near.settimeout(None)
            far = socket.create_connection(("127.0.0.1", self._target), timeout=10)
            far.settimeout(None)
            self.accepted += 1
            self._sockets += [near, far]
            self._spawn(_pump, near, far)
            self._spawn(_pump, far, near)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
