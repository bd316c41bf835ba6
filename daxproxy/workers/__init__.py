"""Several serving processes on one port, and the channel that keeps their caches coherent."""
