"""Benchmarks for daxproxy; run from the repository root, e.g. ``python -m bench.run``."""
