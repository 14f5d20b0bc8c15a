"""The stream's Delta tables: a day of 1,000,000 predictions written the way the worker
writes them (one commit per batch, with its application transaction), read back with the
day's predicate before and after compaction.

`tables.files_per_128mb_after` (target <= 2) and `tables.read_speedup_x` (read time before
/ after compaction, target >= 10). `stream.tables_vs_files_pct` is in `bench_stream`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import best_of, report

DAY = "2026-11-20"
ROWS = 1_000_000
BATCH = 1_000  # rows per commit: 10 s (the worker's commit interval) of 100 readings/s


def predictions(model_tag: str, n: int = ROWS) -> pd.DataFrame:
    """`n` prediction rows as the worker makes them (its core over the fleet simulator's
    readings, tiled), on one day, offsets in order."""
    from bench.bench_stream import _live_batches
    from streaming.alerts import AlertConfig
    from streaming.processor import Processor
    from streaming.scoring import LocalScorer

    _, batches = _live_batches(50_000, 5_000)
    core, scorer = Processor(AlertConfig(), 65_536), LocalScorer(model_tag)
    rows = [row for batch in batches for row in core.process(batch, scorer).rows]
    for row in rows:
        row["processed_at"] = row["ts"]
    base = pd.DataFrame(rows)
    frame = pd.concat([base] * (n // len(base) + 1), ignore_index=True).iloc[:n].copy()
    start = pd.Timestamp(f"{DAY}T00:00:00Z")
    frame["ts"] = (start + pd.to_timedelta(range(n), unit="ms") * (86_400_000 // n)).map(
        lambda t: t.isoformat()
    )
    frame["partition"] = 0
    frame["offset"] = range(n)
    return frame


def run() -> None:
    from bench.bench_serving import _model_and_readings
    from streaming.table_maintenance import compact, stats
    from streaming.tables import Tables, app_id, read_outputs

    model, _ = _model_and_readings()
    frame = predictions(model.version)
    root = Path(tempfile.mkdtemp(prefix="smoke-bench-tables-"))
    tables = Tables(root, writer="bench")
    app = app_id("bench", "t", None, 0)
    took = []
    for k in range(0, len(frame), BATCH):
        part = frame.iloc[k : k + BATCH]
        started = time.perf_counter()
        tables.append("predictions", part, {app: int(part["offset"].iloc[-1]) + 1})
        took.append(time.perf_counter() - started)
    path = root / "predictions"
    before = stats(path)
    report(
        "tables",
        "commit_ms",
        float(pd.Series(took).median() * 1e3),
        "ms",
        f"median of {len(took)} commits of {BATCH:,} predictions each (delta-rs)",
    )

    def read() -> None:
        assert len(read_outputs(root, "predictions", [DAY])) == len(frame)

    def scan() -> None:
        from deltalake import DeltaTable

        day = DeltaTable(str(path)).to_pyarrow_table(filters=[("date", "in", [DAY])])
        assert day.num_rows == len(frame)

    read_before, _ = best_of(read, 3)
    scan_before, _ = best_of(scan, 3)
    report("tables", "files_before", before["files"], "files", f"{len(frame):,} rows, one day")
    report("tables", "scan_s_before", scan_before, "s", "the day into Arrow, best of 3")
    report("tables", "read_s_before", read_before, "s", "the day into pandas, best of 3")
    started = time.perf_counter()
    merged = compact(path, DAY)
    report(
        "tables",
        "compact_s",
        time.perf_counter() - started,
        "s",
        f"{merged['files_removed']} files into {merged['files_added']}",
    )
    after = stats(path)
    read_after, _ = best_of(read, 3)
    scan_after, _ = best_of(scan, 3)
    per_128mb = after["files"] / max(after["bytes"] / (128 * 2**20), 1.0)
    report(
        "tables",
        "files_per_128mb_after",
        per_128mb,
        "files",
        f"{after['files']} files, {after['bytes'] / 2**20:.0f} MB after compaction; target <= 2",
    )
    report("tables", "scan_s_after", scan_after, "s", "the day into Arrow, best of 3")
    report("tables", "read_s_after", read_after, "s", "the day into pandas, best of 3")
    report(
        "tables",
        "read_speedup_x",
        scan_before / scan_after,
        "x",
        "scan time before / after compaction (the day with its predicate into Arrow: what "
        "DuckDB, Polars and Spark pay); target >= 10",
    )
    report(
        "tables",
        "pandas_read_speedup_x",
        read_before / read_after,
        "x",
        "read_outputs before / after: + conversion to pandas and time order, which no "
        "file layout changes",
    )
