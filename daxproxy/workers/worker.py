"""One worker process of several: ``python -m daxproxy.workers.worker``.

Started by the supervisor (:mod:`daxproxy.workers.supervisor`), never by hand: it reads its
:class:`~daxproxy.workers.spec.WorkerSpec` from standard input, logs to standard error as
the supervisor does, dies with the supervisor (on Linux it gets SIGTERM, and drains, when
the supervisor is gone), and serves (:func:`daxproxy.edge.server.serve`) until SIGTERM.
Its exit codes are the command line's: 0 after a graceful stop, 2 when it cannot listen
or its settings cannot run (credentials, say), 1 on a fault.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys

from daxproxy.edge.cli import run
from daxproxy.edge.logs import configure_logging
from daxproxy.edge.memory import tune_malloc
from daxproxy.edge.server import serve
from daxproxy.workers.spec import WorkerSpec

log = logging.getLogger("daxproxy")


def main() -> int:
    spec = pickle.load(sys.stdin.buffer)  # from the supervisor, our parent
    assert isinstance(spec, WorkerSpec)
    configure_logging(spec.settings, sys.stderr)
    if not _dies_with(spec.supervisor):
        log.error("daxproxy %s: the supervisor is gone; not starting", spec.name)
        return 1
    log.debug(tune_malloc())
    return run(spec.settings, lambda: serve(spec.settings, spec.grants, spec))


def _dies_with(parent: int) -> bool:
    """Linux: SIGTERM when the parent exits, however it exits. False if it already has."""
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    return os.getppid() == parent


if __name__ == "__main__":
    sys.exit(main())
