"""A backup taken while the Spark window query runs: its checkpoint and its Delta table
are copied at one cut, so the restored query writes every later batch once."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from smoke_platform.backup import backup, restore
from smoke_platform.core.settings import SparkSettings, under_home
from streaming.spark_job import window_app_id


def _homes(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    root.mkdir(exist_ok=True)
    monkeypatch.setenv("SMOKE_HOME", str(root))
    monkeypatch.setenv("BENTOML_HOME", str(root / ".bentoml"))
    monkeypatch.setenv("DAGSTER_HOME", str(root / ".dagster_home"))


def _batch(table: Path, batch: int, app: str | None) -> None:
    rows = pa.table({"sensor_id": [f"sensor-{batch:03d}"], "batch_id": [batch]})
    txn = CommitProperties(app_transactions=[Transaction(app, batch)]) if app else None
    write_deltalake(table, rows, mode="append", commit_properties=txn)


def test_the_windows_table_is_copied_at_the_batches_the_checkpoint_committed(tmp_path, monkeypatch):
    _homes(monkeypatch, tmp_path / "root")
    checkpoint = under_home(SparkSettings().spark_checkpoint_dir)
    windows = under_home(SparkSettings().windowed_dir)
    # The query committed batches 0-2 to its checkpoint and planned batch 3 (its offsets
    # are written); batch 3 reached the table before the checkpoint recorded it, then
    # something without a transaction (a compaction) committed on top.
    for folder, batches in (("offsets", 4), ("commits", 3)):
        (checkpoint / folder).mkdir(parents=True)
        for i in range(batches):
            (checkpoint / folder / str(i)).write_text("v1\n{}\n")
    (checkpoint / "metadata").write_text(json.dumps({"id": "9f0c"}) + "\n")
    for batch in range(4):
        _batch(windows, batch, window_app_id(checkpoint))
    _batch(windows, 99, None)
    assert DeltaTable(str(windows)).version() == 4

    said: list[str] = []
    manifest = backup(tmp_path / "backup.tar.gz", echo=said.append)
    assert manifest["tables"]["windowed"] == 2, said  # batches 0-2, as committed
    assert manifest["files"]["spark"] == 8

    _homes(monkeypatch, tmp_path / "elsewhere")
    restore(tmp_path / "backup.tar.gz", echo=said.append)
    moved = under_home(SparkSettings().windowed_dir)
    assert sorted(DeltaTable(str(moved)).to_pandas()["batch_id"]) == [0, 1, 2]
    restored = under_home(SparkSettings().spark_checkpoint_dir)
    assert sorted(int(f.name) for f in (restored / "commits").iterdir()) == [0, 1, 2]
    assert sorted(int(f.name) for f in (restored / "offsets").iterdir()) == [0, 1, 2, 3]


def test_without_a_checkpoint_the_windows_table_is_copied_at_its_newest(tmp_path, monkeypatch):
    _homes(monkeypatch, tmp_path / "root")
    windows = under_home(SparkSettings().windowed_dir)
    for batch in range(3):
        _batch(windows, batch, "smoke-windows:a checkpoint that is gone")
    manifest = backup(tmp_path / "backup.tar.gz", echo=lambda *_: None)
    assert manifest["tables"]["windowed"] == 2
