"""`smoke tables` and `smoke tables import`: what a user sees of the stream's Delta
tables, the one-way import of earlier releases' Parquet output, and the worker's refusal
to create a table over such output."""

import pandas as pd
import pytest

from smoke_platform.errors import ConfigError
from smoke_platform_tests.test_cli_errors import _short_error, smoke
from streaming.tables import Tables, read_outputs


def _old_output(folder, n=3, day="2026-11-01"):
    """Predictions and alerts as earlier releases wrote them (one Parquet file per batch)."""
    for kind in ("predictions", "alerts"):
        path = folder / kind / f"date={day}" / "p0-o000000000001-000000000003.parquet"
        path.parent.mkdir(parents=True)
        rows = {"ts": [f"{day}T00:00:0{i}+00:00" for i in range(n)], "offset": range(n)}
        pd.DataFrame({**rows, "partition": 0, "kind": kind}).to_parquet(path, index=False)
    return folder


def test_import_copies_old_output_once_and_tables_lists_it(tmp_path):
    home = {"SMOKE_HOME": str(tmp_path)}
    empty = smoke("tables", env=home)
    assert empty.returncode == 0 and "no tables under" in empty.stdout
    old = _old_output(tmp_path / "old-stream")
    before = sorted(p.stat().st_mtime_ns for p in old.rglob("*"))
    done = smoke("tables", "import", str(old), env=home)
    assert done.returncode == 0, done.stderr
    assert "predictions: 3 rows imported" in done.stdout and "alerts: 3 rows" in done.stdout
    again = smoke("tables", "import", str(old), env=home)
    assert again.returncode == 0 and "imported already" in again.stdout
    stream = tmp_path / "data" / "processed_stream"
    assert len(read_outputs(stream, "predictions")) == 3  # not doubled
    assert sorted(p.stat().st_mtime_ns for p in old.rglob("*")) == before  # source untouched
    listed = smoke("tables", env=home)
    lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[2:]}
    assert lines["predictions"][1:4] == ["0", "1", "3"]  # version, files, rows
    assert set(lines) == {"predictions", "alerts"}


def test_import_refuses_a_missing_folder_and_the_tables_own(tmp_path):
    home = {"SMOKE_HOME": str(tmp_path)}
    _short_error(smoke("tables", "import", str(tmp_path / "nope"), env=home), "no such folder")
    broken = _old_output(tmp_path / "broken")
    bad = broken / "alerts" / "date=2026-11-01" / "p0-o000000000001-000000000003.parquet"
    bad.write_bytes(b"PAR1 cut short")  # predictions readable, alerts not: nothing imported
    _short_error(smoke("tables", "import", str(broken), env=home), str(bad), "nothing imported")
    assert not (tmp_path / "data" / "processed_stream" / "predictions").exists()
    stream = _old_output(tmp_path / "data" / "processed_stream")
    _short_error(smoke("tables", "import", str(stream), env=home), "the tables' own folder")
    shown = smoke("tables", env=home)
    assert "holds Parquet files of an earlier release" in shown.stdout


def test_the_worker_never_creates_a_table_over_old_parquet_output(tmp_path):
    from streaming.config import StreamSettings
    from streaming.worker import StreamWorker

    stream = _old_output(tmp_path / "stream")
    settings = StreamSettings(kafka_bootstrap="127.0.0.1:9", stream_dir=str(stream))
    worker = StreamWorker(settings)  # no broker needed: the check comes first
    try:
        with pytest.raises(ConfigError, match="SMOKE_STREAM_DIR holds Parquet output"):
            worker.preflight()
    finally:
        worker.consumer.close()
    assert not (stream / "predictions" / "_delta_log").exists()
    assert Tables(stream).table("predictions") is None
