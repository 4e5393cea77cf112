"""Benchmark cases for tools/benchmark.py, one module per area."""
