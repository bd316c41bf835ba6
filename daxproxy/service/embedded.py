"""The embedded default backend: moto's DynamoDB server as a child process.

With no upstream configured, the proxy runs ``python -m moto.server`` on a free loopback
port and proxies to it, so that ``daxproxy`` alone gives a working DynamoDB endpoint. The
child is stopped with the proxy and, on Linux, is told to die if the proxy dies first.
The test suite starts its moto servers with the same class.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger(__name__)

_START_ATTEMPTS = 3


class EmbeddedBackendError(RuntimeError):
    pass


def moto_available() -> bool:
    """Whether moto's server (the ``embedded`` extra) is installed."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("moto", "flask", "flask_cors")
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: deliver SIGTERM to the child when the proxy exits, however it exits."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class MotoServer:
    """One moto server process on a loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port  # 0: a free port, chosen at launch
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def launch(self) -> None:
        """Start the process; :meth:`wait_ready` or :meth:`wait_ready_sync` waits for it."""
        if not moto_available():
            raise EmbeddedBackendError(
                "the embedded backend needs moto's server: pip install 'daxproxy[embedded]'"
            )
        self.port = self.port or free_port(self.host)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise EmbeddedBackendError(f"moto's server exited with code {self._process.returncode}")

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((self.host, self.port)) == 0

    def wait_ready_sync(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._accepts():
            self._check_alive()
            if time.monotonic() > deadline:
                raise EmbeddedBackendError(f"moto's server did not listen within {timeout:g} s")
            time.sleep(0.05)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise EmbeddedBackendError(
                        f"moto's server did not listen within {timeout:g} s"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def start_embedded_moto() -> MotoServer:
    """A ready moto server; a port taken between choosing and binding it is tried again."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        server = MotoServer()
        server.launch()
        try:
            await server.wait_ready()
        except EmbeddedBackendError:
            server.stop()
            if attempt == _START_ATTEMPTS:
                raise
            continue
        except BaseException:  # cancelled (a signal during start-up): no child left behind
            server.stop()
            raise
        log.info("embedded moto server started on %s", server.url)
        return server
    raise AssertionError("unreachable")  # pragma: no cover
