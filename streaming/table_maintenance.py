"""Upkeep of the stream's Delta tables (`streaming.tables`): what `smoke tables` and the
Dagster maintenance assets show and do (stats, compaction, vacuum and checkpoint), the
consistent copy a backup takes, and the one-way import of earlier releases' Parquet
output."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa

from streaming.tables import COMMIT_ATTEMPTS, KINDS, PARTITION, Tables, is_table


def stats(path: str | Path) -> dict[str, Any]:
    """A table's version, files, rows and bytes (what `smoke tables` and Dagster show),
    from its log alone: no data file is read."""
    from deltalake import DeltaTable

    dt = DeltaTable(str(path))
    adds = pa.table(dt.get_add_actions(flatten=True))
    records = adds.column("num_records").to_pylist() if adds.num_rows else []
    return {
        "version": dt.version(),
        "files": adds.num_rows,
        "rows": int(sum(r or 0 for r in records)),
        "bytes": int(sum(adds.column("size_bytes").to_pylist())) if adds.num_rows else 0,
        "days": len({p[PARTITION] for p in dt.partitions()}),
    }


def compact(path: str | Path, day: str) -> dict[str, Any]:
    """Merge one day's small files into few large ones, in one commit, while writers go
    on appending to it (appends do not conflict with it); readers of the previous version
    are unaffected (its files go at the next vacuum)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    for attempt in range(COMMIT_ATTEMPTS):
        try:
            dt = DeltaTable(str(path))
            metrics = dt.optimize.compact(partition_filters=[(PARTITION, "=", day)])
            break
        except CommitFailedError:  # another compaction of the day won: read it again
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.05, 0.2))
    return {"files_removed": metrics["numFilesRemoved"], "files_added": metrics["numFilesAdded"]}


def vacuum(path: str | Path, retention_hours: int) -> list[str]:
    """Delete the files no version newer than `retention_hours` needs (Delta's own
    retention check applies: time travel within it keeps working), then write a
    checkpoint so readers start from it instead of replaying every commit."""
    from deltalake import DeltaTable

    dt = DeltaTable(str(path))
    removed = dt.vacuum(
        retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
    )
    dt.create_checkpoint()
    dt.cleanup_metadata()
    return list(removed)


def tables_under(root: str | Path) -> dict[str, Path]:
    """The Delta tables directly under `root` (one level), by name."""
    base = Path(root)
    return {p.name: p for p in sorted(base.iterdir()) if is_table(p)} if base.is_dir() else {}


def legacy_folders(root: str | Path) -> list[Path]:
    """Output folders under `root` in the Parquet-file layout of earlier releases (files,
    no Delta log): a table must not be created over them (a vacuum would delete files it
    does not know)."""
    base = Path(root)
    return [
        base / kind
        for kind in KINDS
        if not is_table(base / kind) and any((base / kind).glob("date=*/*.parquet"))
    ]


def import_parquet(source: str | Path, root: str | Path) -> dict[str, int]:
    """Copy the rows of earlier releases' Parquet output (`source/<kind>/date=*/*.parquet`)
    into the tables under `root`, one commit per table; the source is only read. The
    commit records the import as an application transaction, so importing the same
    folder again adds nothing. Returns rows imported per table."""
    src = Path(source).resolve()
    if src == Path(root).resolve():
        raise ValueError(f"PATH {src} is the tables' own folder: move the old output aside first")
    tables = Tables(root)
    frames = {}
    for kind in KINDS:  # every file read before anything is written
        files = sorted((src / kind).glob("date=*/*.parquet"))
        if files and tables.version(kind, f"import:{src}:{kind}") < 1:
            frames[kind] = pd.concat([_read_old(f) for f in files], ignore_index=True)
    return {
        kind: tables.append(kind, frame, {f"import:{src}:{kind}": 1})
        for kind, frame in frames.items()
    }


def copy_table(path: str | Path, into: str | Path, version: int | None = None) -> tuple[int, int]:
    """Copy the table at one version (default: its newest) into `into`: the log up to
    that version and the data files that version reads; commits made meanwhile are left
    out, so the copy is consistent while a writer goes on. Returns (version, files)."""
    from deltalake import DeltaTable

    src, dst = Path(path), Path(into)
    dt = DeltaTable(str(src), version=version)
    v = dt.version()
    (dst / "_delta_log").mkdir(parents=True, exist_ok=True)
    count = 0
    for f in sorted((src / "_delta_log").iterdir()):
        stem = f.name.split(".", 1)[0]
        # commits and checkpoints up to `v`; `_last_checkpoint` may name a newer one
        if f.is_file() and stem.isdigit() and int(stem) <= v:
            shutil.copy2(f, dst / "_delta_log" / f.name)
            count += 1
    paths = pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist()
    for rel in paths:
        target = dst / unquote(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / unquote(rel), target)
        count += 1
    return v, count


def _read_old(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:  # nothing imported yet
        raise ValueError(
            f"{path} is not a readable Parquet file ({exc}): nothing imported"
        ) from None
