"""What ``bench.run`` measures: the upstream straight, daxproxy in front of it, the ceiling.

Contract: :func:`start_upstream` starts (or, for a URL, only checks) the DynamoDB-compatible
server everything reads from: ``moto`` (moto's server, about 300 GetItem/s), ``dynalite``
(node, from ``bench/node_modules``: ``npm ci`` in ``bench/``; about as fast as an empty
aiohttp handler), a URL such as DynamoDB Local's, or ``auto`` (dynalite when it is installed,
else moto). :func:`start_proxy` starts daxproxy with its caches at their defaults, as users
run it, plus ``--admin`` (the harness reads ``/admin/caches``), or with every cache off
(``caches=False``: pass-through). :func:`start_constant` starts :mod:`bench.constant_server`
answering every request with given bytes: aiohttp (``constant``) or an ``asyncio.Protocol``
with httptools on uvloop (``constant-fast``, the ceiling for any Python server here). Each returns a
:class:`Server`: a name, a URL, the pid to sample (None for a server this harness did not
start), and ``stop()``, safe to call twice; every process is stopped by the caller's
``finally`` and, on Linux, dies with the harness. All on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench import processes
from bench.workloads import headers

DIRECT, PROXY, CONSTANT = "direct", "proxy", "constant"
CONSTANT_FAST = "constant-fast"
TARGETS = (DIRECT, PROXY, CONSTANT, CONSTANT_FAST)
CONSTANTS = {CONSTANT: "aiohttp", CONSTANT_FAST: "protocol"}
LABELS = {
    DIRECT: "upstream straight",
    PROXY: "daxproxy",
    CONSTANT: "constant aiohttp server (ceiling)",
    CONSTANT_FAST: "constant Protocol+httptools server (ceiling for any Python server)",
}
UPSTREAMS = ("auto", "dynalite", "moto")
BENCH_DIR = Path(__file__).resolve().parent
DYNALITE_CLI = BENCH_DIR / "node_modules" / "dynalite" / "cli.js"


@dataclass
class Server:
    name: str
    url: str
    pid: int | None
    version: str = ""
    _child: processes.Child | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()


def dynalite_available() -> bool:
    return DYNALITE_CLI.exists() and shutil.which("node") is not None


def dynalite_version() -> str:
    try:
        meta = json.loads((DYNALITE_CLI.parent / "package.json").read_text())
    except (OSError, ValueError):
        return "dynalite (unknown version)"
    return f"dynalite {meta.get('version', '?')}"


def choose_upstream(requested: str) -> str:
    """``moto``, ``dynalite`` or the URL; ``auto`` is dynalite when it is installed."""
    if requested == "auto":
        return "dynalite" if dynalite_available() else "moto"
    if requested == "dynalite" and not dynalite_available():
        raise processes.StartError(
            "--upstream dynalite, but it is not installed: run `npm ci` in bench/ (needs node)"
        )
    return requested


def answers_dynamodb(port: int, host: str = processes.HOST) -> bool:
    """Whether a DynamoDB-compatible server on the port answers ListTables with 200."""
    connection = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        connection.request("POST", "/", body=b'{"Limit": 1}', headers=headers("ListTables"))
        answer = connection.getresponse()
        answer.read()
        return answer.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def start_upstream(kind: str, work_dir: Path) -> Server:
    if kind == "moto":
        argv = [sys.executable, "-m", "moto.server", "-H", processes.HOST, "-p", "{port}"]
        child = processes.start_child("moto", argv, work_dir / "moto.log", probe=answers_dynamodb)
        return Server("moto", child.url, child.pid, _moto_version(), child)
    if kind == "dynalite":
        argv = ["node", str(DYNALITE_CLI), "--host", processes.HOST, "--port", "{port}"]
        argv += ["--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"]
        log = work_dir / "dynalite.log"
        child = processes.start_child("dynalite", argv, log, probe=answers_dynamodb)
        return Server("dynalite", child.url, child.pid, dynalite_version(), child)
    parts = urlsplit(kind)
    if parts.scheme != "http" or not parts.hostname:
        raise processes.StartError(f"--upstream {kind!r}: expected auto, dynalite, moto or a URL")
    if not answers_dynamodb(parts.port or 80, parts.hostname):
        raise processes.StartError(f"{kind} does not answer ListTables with 200")
    return Server(kind, kind.rstrip("/"), None, "external (not started by the bench)")


def _moto_version() -> str:
    import importlib.metadata

    return f"moto {importlib.metadata.version('moto')}"


def start_proxy(
    upstream_url: str, work_dir: Path, name: str = "daxproxy", caches: bool = True
) -> Server:
    options: tuple[str, ...] = ("--admin",)
    if not caches:
        options += processes.caches_off()
    child = processes.start_proxy(upstream_url, work_dir, options, name)
    return Server(name, child.url, child.pid, "", child)


def start_constant(
    work_dir: Path, body: bytes, name: str = "constant", target: str = CONSTANT
) -> Server:
    body_file = work_dir / f"{name}-body.json"
    body_file.write_bytes(body)
    child = processes.start_constant(work_dir, body_file, CONSTANTS[target], name)
    return Server(name, child.url, child.pid, "", child)
