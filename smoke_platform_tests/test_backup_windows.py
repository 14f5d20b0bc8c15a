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
    # something without a transaction (a compaction) committed on top. Files past the
    # last commit's cut (offsets of batch 4, state version 4: written while a backup
    # copies the folder) stay out of the copy.
    for folder, names in (
        ("offsets", ["0", "1", "2", "3", "4", ".4.crc"]),
        ("commits", ["0", "1", "2", ".2.crc"]),
        ("state/0/0", ["1.delta", "2.delta", "3.delta", "4.delta", "_metadata"]),
        ("sources/0", ["0"]),
    ):
        (checkpoint / folder).mkdir(parents=True)
        for name in names:
            (checkpoint / folder / name).write_text("v1\n{}\n")
    (checkpoint / "metadata").write_text(json.dumps({"id": "9f0c"}) + "\n")
    for batch in range(4):
        _batch(windows, batch, window_app_id(checkpoint))
    _batch(windows, 99, None)
    assert DeltaTable(str(windows)).version() == 4

    said: list[str] = []
    manifest = backup(tmp_path / "backup.tar.gz", echo=said.append)
    assert manifest["tables"]["windowed"] == 2, said  # batches 0-2, as committed

    _homes(monkeypatch, tmp_path / "elsewhere")
    restore(tmp_path / "backup.tar.gz", echo=said.append)
    moved = under_home(SparkSettings().windowed_dir)
    assert sorted(DeltaTable(str(moved)).to_pandas()["batch_id"]) == [0, 1, 2]
    restored = under_home(SparkSettings().spark_checkpoint_dir)
    names = sorted(str(f.relative_to(restored)) for f in restored.rglob("*") if f.is_file())
    assert names == [
        "commits/.2.crc", "commits/0", "commits/1", "commits/2", "metadata",
        "offsets/0", "offsets/1", "offsets/2", "offsets/3", "sources/0/0",
        "state/0/0/1.delta", "state/0/0/2.delta", "state/0/0/3.delta", "state/0/0/_metadata",
    ]  # fmt: skip


def _checkpoint(path: Path, committed: int) -> None:
    for folder in ("offsets", "commits"):
        (path / folder).mkdir(parents=True)
        for i in range(committed + 1):
            (path / folder / str(i)).write_text("v1\n{}\n")


def test_a_table_written_under_an_earlier_checkpoint_at_the_same_path_is_kept_whole(
    tmp_path, monkeypatch
):
    _homes(monkeypatch, tmp_path / "root")
    checkpoint = under_home(SparkSettings().spark_checkpoint_dir)
    windows = under_home(SparkSettings().windowed_dir)
    for batch in range(40, 43):  # the earlier checkpoint's batches
        _batch(windows, batch, window_app_id(checkpoint))
    _checkpoint(checkpoint, committed=1)  # removed and started again
    said: list[str] = []
    manifest = backup(tmp_path / "backup.tar.gz", echo=said.append)
    assert manifest["tables"]["windowed"] == 2
    assert any("holds batch 42" in line and "planned only 1" in line for line in said), said


def test_a_table_holding_only_uncommitted_batches_is_left_for_the_query(tmp_path, monkeypatch):
    _homes(monkeypatch, tmp_path / "root")
    checkpoint = under_home(SparkSettings().spark_checkpoint_dir)
    windows = under_home(SparkSettings().windowed_dir)
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text("v1\n{}\n")  # batch 0 planned, not committed
    _batch(windows, 0, window_app_id(checkpoint))  # ... but already in the table
    said: list[str] = []
    manifest = backup(tmp_path / "backup.tar.gz", echo=said.append)
    assert "windowed" not in manifest["tables"], said
    _homes(monkeypatch, tmp_path / "elsewhere")
    restore(tmp_path / "backup.tar.gz", echo=said.append)
    assert not under_home(SparkSettings().windowed_dir).exists()


def test_the_query_names_its_checkpoint_the_same_from_any_working_directory(tmp_path, monkeypatch):
    """The job (`smoke spark`, relative settings) and the backup (`smoke backup`, from
    another folder) must agree on the query's Delta application id."""
    checkpoint = tmp_path / "root" / "data" / "checkpoints" / "windows"
    checkpoint.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "root")
    relative = window_app_id(Path("data/checkpoints/windows"))
    monkeypatch.chdir(tmp_path)
    assert (
        relative
        == window_app_id(checkpoint)
        == window_app_id(f"{tmp_path}/root/data/../data/checkpoints/windows")
    )
    assert window_app_id("s3a://bucket/ckpt") == "smoke-windows:s3a://bucket/ckpt"


def test_without_a_checkpoint_the_windows_table_is_copied_at_its_newest(tmp_path, monkeypatch):
    _homes(monkeypatch, tmp_path / "root")
    windows = under_home(SparkSettings().windowed_dir)
    for batch in range(3):
        _batch(windows, batch, "smoke-windows:a checkpoint that is gone")
    said: list[str] = []
    manifest = backup(tmp_path / "backup.tar.gz", echo=said.append)
    assert manifest["tables"]["windowed"] == 2
    # No model store or Dagster history where the variables point: said, naming them.
    for variable in ("BENTOML_HOME", "DAGSTER_HOME"):
        assert any("warning: nothing in" in s and variable in s for s in said), said
