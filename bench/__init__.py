"""Benchmarks: `python -m bench [area ...]` prints `BENCH <area>.<name>=<value> <unit>` lines."""
