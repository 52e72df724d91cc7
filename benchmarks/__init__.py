"""Benchmarks: `make bench` prints their tables."""
