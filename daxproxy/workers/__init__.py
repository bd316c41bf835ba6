"""Several serving processes on one port, and the channel that keeps their caches coherent.

:mod:`~daxproxy.workers.cpus` (what ``workers = "auto"`` means), :mod:`~daxproxy.workers.
listeners` (the port, checked and held by the supervisor), :mod:`~daxproxy.workers.
supervisor` (starts, restarts and stops the worker processes), :mod:`~daxproxy.workers.
worker` (one worker process), :mod:`~daxproxy.workers.channel` (the change hub and each
worker's link to it), :mod:`~daxproxy.workers.figures` (each worker's metrics and cache
figures, gathered over private Unix sockets) and :mod:`~daxproxy.workers.totals` (those
figures summed).
"""
