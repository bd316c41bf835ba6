"""The servers under test, as child processes that are always stopped.

Contract: :func:`start_proxy` and :func:`start_constant` return a :class:`Child` whose
``GET /healthz`` has answered 200, and :func:`start_child` any other server, ready by a probe
of its own; :func:`caches_off` gives the daxproxy options that turn every cache off (a pure
pass-through).
Every wait is bounded; a port taken between choosing and binding it is tried again with
another. :meth:`Child.stop` sends SIGTERM, then SIGKILL after a grace period, and is safe
to call twice; on Linux a child is also told to die if the harness dies first. A child's
output goes to a log file whose tail is quoted when it fails to start.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from daxproxy.service.embedded import free_port

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
START_ATTEMPTS = 3
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# The proxy signs upstream requests with whatever the credential chain finds: give it
# dummy keys, no profile to look up, and never let it ask an instance metadata service.
# None removes a variable.
PROXY_ENV: dict[str, str | None] = {
    "AWS_PROFILE": None,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

# The options that turn a cache off: (option, value). For the query cache,
# --query-ttl-millis 0 is the switch (0 there means off, not "no expiry").
_CACHE_OFF = (("--item-cache-max-bytes", "0"), ("--query-ttl-millis", "0"))


class StartError(RuntimeError):
    pass


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM the child when the harness exits, however it exits."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """One server process on a loopback port, started from the repository root."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log_path: Path,
        probe: Callable[[int], bool] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.probe = probe or _healthy  # is the server on this port ready?
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, env: dict[str, str | None] | None = None) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(env or {}),
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )

    def wait_healthy(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the probe (by default: ``GET /healthz`` answers 200) says ready; StartError
        if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.probe(self.port):
            assert self._process is not None
            if self._process.poll() is not None:
                raise StartError(f"{self.name} exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                raise StartError(f"{self.name} was not ready within {timeout:g} s")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


def _environment(overrides: dict[str, str | None]) -> dict[str, str]:
    environment = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _start_one(
    name: str,
    argv: list[str],
    port: int,
    log_path: Path,
    env: dict[str, str | None],
    *,
    probe: Callable[[int], bool] | None = None,
) -> Child:
    child = Child(name, argv, port, log_path, probe)
    child.start(env)
    try:
        child.wait_healthy()
    except StartError as exc:
        child.stop()
        raise StartError(f"{exc}; its log ends:\n{child.log_tail()}") from None
    except BaseException:
        child.stop()
        raise
    return child


def start_child(
    name: str,
    argv_for_port: list[str],
    log_path: Path,
    env: dict[str, str | None] | None = None,
    probe: Callable[[int], bool] | None = None,
) -> Child:
    """``argv_for_port`` holds ``{port}`` where the port goes; a fresh port per attempt.
    Ready when ``probe(port)`` is true (by default: ``GET /healthz`` answers 200)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port(HOST)
        argv = [part.replace("{port}", str(port)) for part in argv_for_port]
        try:
            return _start_one(name, argv, port, log_path, env or {}, probe=probe)
        except StartError:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def caches_off() -> tuple[str, ...]:
    """The options of this daxproxy (those its ``--help`` lists) that turn every cache off.
    Asking ``--help`` also finds a daxproxy that cannot start before anything is measured:
    StartError, with the end of its output."""
    text = _proxy_help()
    return tuple(part for option in _CACHE_OFF if option[0] in text for part in option)


def _proxy_help() -> str:
    argv = [sys.executable, "-m", "daxproxy", "--help"]
    try:
        done = subprocess.run(
            argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        raise StartError("python -m daxproxy --help did not finish within 60 s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-12:])
        raise StartError(f"python -m daxproxy --help exited with {done.returncode}:\n{tail}")
    return done.stdout


def start_proxy(
    upstream_url: str, log_dir: Path, options: Sequence[str] = (), name: str = "daxproxy"
) -> Child:
    argv = [sys.executable, "-m", "daxproxy", "--host", HOST, "--port", "{port}"]
    argv += ["--upstream", upstream_url, "--log-level", "warning", *options]
    return start_child(name, argv, log_dir / f"{name}.log", PROXY_ENV)


def start_constant(
    log_dir: Path, body_file: Path | None = None, kind: str = "aiohttp", name: str = "constant"
) -> Child:
    """:mod:`bench.constant_server` of that ``kind`` (``aiohttp`` or ``protocol``)."""
    argv = [sys.executable, "-m", "bench.constant_server", "--host", HOST, "--port", "{port}"]
    argv += ["--kind", kind]
    if body_file is not None:
        argv += ["--body-file", str(body_file)]
    return start_child(f"constant server ({kind})", argv, log_dir / f"{name}.log")
