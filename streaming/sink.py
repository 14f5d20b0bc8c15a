"""Durable, idempotent outputs of the worker, per source partition.

Files are keyed by source partition and offset range and written atomically
(temporary file + rename); each partition's state file records the highest offset
whose outputs are durable (`hwm`) and the per-sensor state at that point. A message
at or below `hwm` is never processed again, and output files past `hwm` (left by a
crash between writing outputs and the state) are removed before a partition resumes.
So a replay after a crash creates no duplicate rows and no duplicate alerts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from smoke_platform.core.schema import FIELDS

_FILE = re.compile(r"p(?P<p>\d+)-o(?P<first>\d+)-(?P<last>\d+)\.parquet$")
KINDS = ("predictions", "alerts", "trouble")
_URL_SAFE = str.maketrans("+/", "-_")
_ARROW_TYPES = {
    "float": pa.float64(),
    "int": pa.int64(),
    "str": pa.string(),
    "datetime": pa.string(),
}
# The reading columns of a predictions row, as the files hold them (`ts` as ISO text).
ROW_SCHEMA = pa.schema([pa.field(f.name, _ARROW_TYPES[f.dtype]) for f in FIELDS])


def unwritable_rows(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Rows the files cannot hold (a value that does not fit its column's type or cannot
    be encoded), by position, with the reason; one conversion of the whole batch when all
    fit. The worker dead-letters these instead of failing the batch for good."""
    try:
        pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
        return {}
    except (pa.ArrowException, ValueError, TypeError, UnicodeError):
        pass
    bad = {}
    for i, row in enumerate(rows):
        try:
            pa.Table.from_pylist([row], schema=ROW_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError, UnicodeError) as exc:
            bad[i] = f"{type(exc).__name__}: {exc}"
    return bad


class PartitionSink:
    """`topic_id` is the topic's Kafka id: offsets only mean something within one
    incarnation of a topic. When a partition's state was written for another id (the topic
    was recreated, or an embedded broker restarted empty), that state is void: the old
    files are kept under an `x<old id>-` prefix (still read as outputs, never mistaken for
    this incarnation's) and the partition starts from scratch."""

    def __init__(self, root: str | Path, topic: str, topic_id: str | None = None) -> None:
        self.root = Path(root)
        self.topic = topic
        self.topic_id = topic_id

    def _state_path(self, partition: int) -> Path:
        return self.root / "_state" / f"{self.topic}-p{partition}.json"

    def load(self, partition: int) -> dict[str, Any]:
        """State of a partition ({"hwm": -1, "sensors": {}} if new); removes orphan files."""
        path = self._state_path(partition)
        state: dict[str, Any] = (
            json.loads(path.read_text()) if path.exists() else {"hwm": -1, "sensors": {}}
        )
        previous = state.get("topic_id")
        if self.topic_id and previous and previous != self.topic_id:
            self._archive(partition, previous)
            state = {"hwm": -1, "sensors": {}}
        for kind in KINDS:
            for f in (self.root / kind).glob(f"date=*/p{partition}-o*.parquet"):
                m = _FILE.search(f.name)
                if m and int(m["first"]) > state["hwm"]:
                    f.unlink()
        return state

    def _archive(self, partition: int, old_id: str) -> None:
        # librdkafka prints ids in standard base64 ('+', '/'); file names use Kafka's own
        # URL-safe form of the same id
        old_id = old_id.translate(_URL_SAFE)
        for kind in KINDS:
            for f in (self.root / kind).glob(f"date=*/p{partition}-o*.parquet"):
                f.rename(f.with_name(f"x{old_id}-{f.name}"))

    def write(
        self,
        partition: int,
        first: int,
        last: int,
        frames: dict[str, pd.DataFrame],
        state: dict[str, Any] | None,
        tag: str = "",
    ) -> None:
        """Write this batch's outputs for one partition, then its state (the commit point).
        `tag` tells apart files of the same offsets (a poll's trouble signals, written
        between batches); `state` None writes files only."""
        for kind, frame in frames.items():
            self.write_events(kind, f"p{partition}-o{first:012d}-{last:012d}{tag}", frame)
        if state is None:
            return
        if self.topic_id:
            state = {**state, "topic_id": self.topic_id}
        atomic_write(self._state_path(partition), lambda tmp: tmp.write_text(json.dumps(state)))

    def write_events(self, kind: str, name: str, frame: pd.DataFrame) -> None:
        """`frame` (rows with an ISO `ts`) as `<kind>/date=<day>/<name>.parquet`, by day."""
        if frame.empty:
            return
        for date, part in frame.groupby(frame["ts"].str[:10], sort=True):
            path = self.root / kind / f"date={date}" / f"{name}.parquet"
            atomic_write(path, lambda tmp, p=part: p.to_parquet(tmp, index=False))


def atomic_write(path: Path, write: Any) -> None:
    """`write(tmp)` to a hidden temporary file next to `path`, fsync, rename into place:
    readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def output_days(root: str | Path, kind: str = "") -> list[str]:
    """The dates (YYYY-MM-DD) with a `date=` folder under `root/kind`, oldest first."""
    return sorted(p.name.split("=", 1)[1] for p in Path(root, kind).glob("date=*") if p.is_dir())


def read_outputs(
    root: str | Path, kind: str = "", days: Iterable[str] | None = None
) -> pd.DataFrame:
    """Rows of one output kind (`predictions`, `alerts`; "" for the Spark job's windows),
    of all days or of the given ones (for reports, tests and Dagster assets)."""
    base = Path(root, kind)
    if days is None:
        files = sorted(base.glob("date=*/*.parquet"))
    else:
        files = sorted(f for d in days for f in (base / f"date={d}").glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def remove_days_before(root: str | Path, cutoff: str, kind: str = "") -> list[str]:
    """Delete `date=` folders older than `cutoff` (YYYY-MM-DD) under `root/kind`: retention
    for derived stream output (never raw data). Returns the removed folders."""
    removed = []
    for day in output_days(root, kind):
        if day < cutoff:
            folder = Path(root, kind, f"date={day}")
            shutil.rmtree(folder)
            removed.append(str(folder))
    return removed
