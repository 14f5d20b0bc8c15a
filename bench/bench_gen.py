"""Generator throughput at the default data size (target: 60k rows well under 10 s)."""

from __future__ import annotations

import itertools
import time

from bench.common import best_of, report
from smoke_platform.core.simulate import DEFAULT_ROWS, generate_readings, live_readings


def run() -> None:
    best, median = best_of(lambda: generate_readings(DEFAULT_ROWS, seed=0), repeat=3)
    report(
        "gen", "rows_per_s", DEFAULT_ROWS / best, "rows/s", f"median {DEFAULT_ROWS / median:.0f}"
    )
    report("gen", "default_60k_s", best, "s", "target < 10 s")
    started, n = time.perf_counter(), 50_000
    for _ in itertools.islice(live_readings(seed=0, n_sensors=8), n):
        pass
    report("gen", "live_rows_per_s", n / (time.perf_counter() - started), "rows/s")
