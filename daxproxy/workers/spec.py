"""What the supervisor tells each worker process, and how a worker says it serves.

The supervisor writes a :class:`WorkerSpec` (pickled) to the worker's standard input; the
worker writes :data:`READY` to its standard output (a pipe the supervisor reads) once it
listens and answers its figures socket, then points its standard output at its standard
error, so that nothing a library prints can fill that pipe and block the worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from daxproxy.core.access import Grant
from daxproxy.core.config import Settings

READY = b"ready\n"
CHANGES_SOCKET = "changes.sock"


@dataclass(frozen=True)
class WorkerSpec:
    number: int  # 1..workers, kept by the worker that replaces a dead one
    settings: Settings  # the port is the one the supervisor holds (never 0)
    grants: Mapping[str, Grant] | None
    run_dir: str  # the supervisor's private directory of Unix sockets
    embedded: str | None  # the URL of the supervisor's embedded moto, when it runs one
    supervisor: int  # the supervisor's process id

    @property
    def changes(self) -> str:
        """The change hub's socket."""
        return os.path.join(self.run_dir, CHANGES_SOCKET)

    @property
    def name(self) -> str:
        return f"worker {self.number}"


def announce_ready() -> None:
    os.write(1, READY)
    os.dup2(2, 1)
