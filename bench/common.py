"""Shared helpers for benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def report(area: str, name: str, value: float, unit: str, note: str = "") -> None:
    """Print one figure on its own line in the house format."""
    shown = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    print(f"BENCH {area}.{name}={shown} {unit}" + (f"  # {note}" if note else ""), flush=True)


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(best, median) wall-clock seconds over `repeat` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total
