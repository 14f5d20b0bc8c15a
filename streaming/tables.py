"""The stream's outputs as Delta Lake tables (delta-rs), partitioned by `date`.

`<root>/predictions`, `<root>/alerts` and `<root>/trouble` are Delta tables: ACID commits,
one schema (new columns merge in; a value of the wrong type is refused), time travel, and
one format that Spark, pandas, Polars and DuckDB read.

Exactly once by Delta's own mechanism: the worker commits each batch with an *application
transaction* per source partition (`app_id`: consumer group, topic, the topic's Kafka id
and partition; version: the next offset after the batch). A table holds every row of a
partition whose offset is below that version and none above it, so a replayed batch keeps
only the rows at or past it (`Tables.new_rows`): no file names, no orphan clean-up.

Readers push the date predicate down to the partitions (`read_outputs(..., days)`).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from smoke_platform.core.days import utc_days

KINDS = ("predictions", "alerts", "trouble")
COMMIT_ATTEMPTS = 8
PARTITION = "date"


def app_id(group: str, topic: str, topic_id: str | None, partition: int) -> str:
    """The application-transaction id of one source partition (one incarnation of the
    topic: a recreated topic starts again at offset 0 under a new id)."""
    return f"{group}:{topic}:{topic_id or '-'}:{partition}"


def is_table(path: str | Path) -> bool:
    return Path(path, "_delta_log").is_dir()


class Tables:
    """The Delta tables under one root, kept open (each commit updates its snapshot
    incrementally instead of reading the log again)."""

    def __init__(self, root: str | Path, writer: str = "") -> None:
        self.root = Path(root)
        self.writer = writer  # recorded in each commit's info (the table's history says who)
        self._open: dict[str, Any] = {}

    def path(self, kind: str) -> Path:
        return self.root / kind

    def table(self, kind: str, refresh: bool = False) -> Any:
        """The open table of `kind` (None before its first commit); `refresh` reads the
        log's newest commits (another writer's)."""
        from deltalake import DeltaTable

        dt = self._open.get(kind)
        if dt is None and is_table(self.path(kind)):
            dt = self._open[kind] = DeltaTable(str(self.path(kind)))
        elif dt is not None and refresh:
            dt.update_incremental()
        return dt

    def version(self, kind: str, app: str) -> int:
        """The version the table holds for application `app` (-1: none)."""
        dt = self.table(kind)
        found = dt.transaction_version(app) if dt is not None else None
        return -1 if found is None else int(found)

    def new_rows(
        self, kind: str, rows: list[dict[str, Any]], apps: Mapping[int, str]
    ) -> list[dict[str, Any]]:
        """The rows (with `partition` and `offset`) the table does not hold yet."""
        done = {p: self.version(kind, app) for p, app in apps.items()}
        return [r for r in rows if r["offset"] >= done.get(r["partition"], -1)]

    def new_events(
        self,
        kind: str,
        events: list[dict[str, Any]],
        firsts: Mapping[int, int],
        apps: Mapping[int, str],
        key: tuple[str, ...] = ("trouble_id", "event"),
    ) -> list[dict[str, Any]]:
        """A batch's events that carry no offset (trouble signals), of partitions whose
        batch started at `firsts`: all of a batch past the table's version, none of one
        wholly below it; across it (a replay cut differently), those whose `key` the
        partition's rows do not hold yet."""
        out = []
        for partition, app in apps.items():
            mine = [e for e in events if e["partition"] == partition]
            done = self.version(kind, app)
            if not mine or firsts[partition] >= done:
                out += mine
                continue
            days = utc_days(pa.array([str(e["ts"]) for e in mine], pa.string()))
            held = read_outputs(self.root, kind, set(days.to_pylist()))
            if not held.empty:
                held = held[held["partition"] == partition]
            seen = set(held[list(key)].itertuples(index=False, name=None)) if len(held) else set()
            out += [e for e in mine if tuple(e[k] for k in key) not in seen]
        return out

    def append(
        self,
        kind: str,
        rows: list[dict[str, Any]] | pd.DataFrame,
        versions: Mapping[str, int] | None = None,
    ) -> int:
        """Append rows (each with an ISO `ts`) in one commit, recording `versions` as
        application transactions; returns the number of rows written. Nothing to write and
        no version to record: no commit.

        Several writers append to one table at once (workers of a group): appends do not
        conflict, and a commit that lost a race (another writer created the table or
        changed its schema first) is made again on the table's newest snapshot. Only a
        batch bringing a new column changes the schema."""
        from deltalake import CommitProperties, Transaction, write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        if len(rows) == 0 and not versions:
            return 0
        txns = [Transaction(app, int(v)) for app, v in (versions or {}).items()]
        self.path(kind).mkdir(parents=True, exist_ok=True)
        for attempt in range(COMMIT_ATTEMPTS):
            dt = self.table(kind, refresh=attempt > 0)
            schema = pa.schema(dt.schema().to_arrow()) if dt is not None else None
            data = to_arrow(rows, schema)
            new_columns = schema is None or bool(set(data.column_names) - set(schema.names))
            try:
                write_deltalake(
                    dt if dt is not None else str(self.path(kind)),
                    data,
                    mode="append",
                    partition_by=[PARTITION],
                    schema_mode="merge" if new_columns else None,
                    commit_properties=CommitProperties(
                        app_transactions=txns or None,
                        custom_metadata={"writer": self.writer} if self.writer else None,
                    ),
                )
                break
            except (CommitFailedError, DeltaError):
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                self._open.pop(kind, None)  # read the table again: someone committed first
                if txns and all(self.version(kind, t.app_id) >= t.version for t in txns):
                    break  # it landed (the error came after the commit): not twice
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        if kind not in self._open:
            self.table(kind)
        return len(rows)


class PendingCommits:
    """The worker's outputs of several batches gathered into one commit per table: a
    table's commit costs grow with its files, so it commits every `interval_s` (or at
    `max_rows`) instead of every batch. Each batch's Kafka transaction commits at once
    as before; what is pending is re-derived after a crash, since the partition state
    written after the tables' commits stays behind them (`PartitionSink`)."""

    def __init__(self, tables: Tables, interval_s: float, max_rows: int) -> None:
        self.tables = tables
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.rows: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        self.versions: dict[int, tuple[str, int]] = {}  # partition -> (app id, next offset)
        self.states: dict[int, dict[str, Any]] = {}  # partition -> state after its last batch
        self.since: float | None = None

    def add(self, kind: str, rows: list[dict[str, Any]]) -> None:
        self.rows[kind] += rows

    def mark(self, partition: int, app: str, next_offset: int, state: dict[str, Any]) -> None:
        """A batch of `partition` is done up to `next_offset`, its state `state`."""
        self.versions[partition] = (app, next_offset)
        self.states[partition] = state
        if self.since is None:
            self.since = time.monotonic()

    def due(self) -> bool:
        if self.since is None:
            return False
        held = sum(len(r) for r in self.rows.values())
        return held >= self.max_rows or time.monotonic() - self.since >= self.interval_s

    def flush(self, write_state: Any) -> None:
        """One commit per table holding rows, every pending version recorded in each;
        then each partition's state (`write_state(partition, state)`)."""
        apps = {p: app for p, (app, _) in self.versions.items()}
        for kind, rows in self.rows.items():
            if not rows:
                continue
            self.tables.table(kind, refresh=True)  # what other writers committed meanwhile
            if kind != "trouble":  # rows with offsets: only those the table still lacks
                rows = self.tables.new_rows(kind, rows, apps)
            # never a version below what the table holds (a replay behind it, mid-flush)
            versions = {
                app: max(v, self.tables.version(kind, app)) for app, v in self.versions.values()
            }
            if rows:
                self.tables.append(kind, rows, versions)
            self.rows[kind] = []  # committed: a flush made again after a failure skips them
        for partition, state in self.states.items():
            write_state(partition, state)
        self.clear()

    def take(self, tables: Tables) -> PendingCommits:
        """What is pending, moved into a new instance that commits through `tables` (the
        worker's table commits run on a thread of their own, with their own table
        handles); this one is left empty."""
        taken = PendingCommits(tables, self.interval_s, self.max_rows)
        taken.rows, taken.versions, taken.states = self.rows, dict(self.versions), dict(self.states)
        taken.since = self.since
        self.clear()
        return taken

    def put_back(self, earlier: PendingCommits) -> None:
        """`earlier` (taken before what is pending now; its commit failed) in front of it
        again, so the next commit holds both, in order."""
        for kind in KINDS:
            self.rows[kind] = earlier.rows[kind] + self.rows[kind]
        self.versions = {**earlier.versions, **self.versions}
        self.states = {**earlier.states, **self.states}
        self.since = earlier.since if earlier.since is not None else self.since

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget what is pending of `partitions` (lost to another member, which replays
        it from their state)."""
        gone = set(partitions)
        for kind in KINDS:
            self.rows[kind] = [r for r in self.rows[kind] if r.get("partition") not in gone]
        for p in gone:
            self.versions.pop(p, None)
            self.states.pop(p, None)

    def clear(self) -> None:
        self.rows = {k: [] for k in KINDS}
        self.versions.clear()
        self.states.clear()
        self.since = None


def to_arrow(rows: list[dict[str, Any]] | pd.DataFrame, schema: Any = None) -> pa.Table:
    """`rows` (dicts, or a frame) with their `date` partition column, typed and ordered as
    the table's `schema`, the table's columns they lack as nulls; a column of nulls only
    that the table lacks is left out (it merges in once it holds a value).

    No pandas frame between dicts and Arrow (the worker's table commits run beside the
    stream and hold the GIL while they convert): rows whose every key the table has, with
    values of its types, are read by Arrow itself as one struct array; otherwise column
    by column, each in the table's type where it has the column, a column whose values
    are of another kind inferred and cast, as a frame's columns are (a value that cannot
    be is refused)."""
    known = {f.name: f.type for f in schema} if schema is not None else {}
    if isinstance(rows, pd.DataFrame):
        arrays = _arrays({name: rows[name] for name in rows.columns}, known)
    else:
        first = list(rows[0]) if rows else []
        names = first + sorted(set().union(*rows) - set(first))  # rows may differ in keys
        # the table's columns (all of them before its first commit, their types inferred)
        # in one struct array; the rest (a key new to the table, or all of them when a
        # value is not of its column's type) column by column
        arrays = _as_struct(rows, [n for n in names if n in known or not known], known) or {}
        rest = {name: [r.get(name) for r in rows] for name in names if name not in arrays}
        arrays.update(_arrays(rest, known))
        arrays = {n: arrays[n] for n in names if n in arrays}
    if len(rows):  # (a `ts` of nulls only, dropped as a column, still names a partition)
        ts = arrays["ts"] if "ts" in arrays else pa.nulls(len(rows), pa.string())
        arrays[PARTITION] = (
            utc_days(ts)
            if pa.types.is_string(ts.type)
            else pa.array([str(t)[:10] for t in ts.to_pylist()])
        )
    for name, type_ in known.items():  # the table's columns these rows lack: nulls
        if name not in arrays:
            arrays[name] = pa.nulls(len(rows), type_)
    ordered = [n for n in known if n in arrays]
    return pa.table({n: arrays[n] for n in ordered + [n for n in arrays if n not in known]})


# Before a table's first commit, the types of its columns are inferred from this many rows
# (Arrow's inference over every row costs twice its typed conversion).
INFER_ROWS = 1_000


def _as_struct(rows: list[dict[str, Any]], names: list[str], known: dict[str, Any]) -> Any:
    """Of the columns `names`, those read by Arrow as one struct array, in the table's
    types (with no table yet, `known` empty: as inferred from the first `INFER_ROWS`
    rows, a column of nulls there left to the caller); None when a value is not of its
    column's type. Nested columns are left to the caller too: a typed conversion would
    drop a nested key the type lacks, where inferring and casting refuses it."""
    if not rows or not names:
        return None
    try:
        if known:
            types = known
        else:
            sample = pa.array(rows[:INFER_ROWS], from_pandas=True).type
            types = {f.name: f.type for f in sample if not pa.types.is_null(f.type)}
        flat = [n for n in names if n in types and not pa.types.is_nested(types[n])]
        struct = pa.struct([pa.field(name, types[name]) for name in flat])
        table = pa.Table.from_struct_array(pa.array(rows, type=struct, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return None
    return {name: table.column(name).combine_chunks() for name in table.column_names}


def _arrays(columns: Mapping[str, Any], known: dict[str, Any]) -> dict[str, pa.Array]:
    """Each column in the table's type (`_array`); one of nulls only that the table lacks
    left out."""
    arrays = {}
    for name, values in columns.items():
        array = _array(values, known.get(name))
        if name in known or not pa.types.is_null(array.type):
            arrays[name] = array
    return arrays


def _array(values: Any, type_: Any) -> pa.Array:
    """`values` (a list or a pandas Series) as an Arrow array of `type_` (None: inferred);
    values of another kind are inferred, then cast (a value that cannot be is refused)."""
    if type_ is not None and not pa.types.is_nested(type_):  # see `_as_struct`
        try:
            return pa.array(values, type=type_, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    array = pa.array(values, from_pandas=True)
    return array.cast(type_) if type_ is not None and array.type != type_ else array


def output_days(root: str | Path, kind: str = "") -> list[str]:
    """The dates (YYYY-MM-DD) holding output under `root/kind`, oldest first."""
    path = Path(root, kind)
    if is_table(path):
        from deltalake import DeltaTable

        return sorted({p[PARTITION] for p in DeltaTable(str(path)).partitions()})
    return sorted(p.name.split("=", 1)[1] for p in path.glob("date=*") if p.is_dir())


def read_outputs(
    root: str | Path, kind: str = "", days: Iterable[str] | None = None
) -> pd.DataFrame:
    """Rows of one output kind (`predictions`, `alerts`, `trouble`; "" for the Spark job's
    windows), of all days or of the given ones (the predicate reaches the partitions), in
    time order."""
    path = Path(root, kind)
    if is_table(path):
        from deltalake import DeltaTable

        filters = None if days is None else [(PARTITION, "in", sorted(days))]
        if filters is not None and not filters[0][2]:
            return pd.DataFrame()
        frame = DeltaTable(str(path)).to_pandas(filters=filters).drop(columns=[PARTITION])
        for name in frame.columns:  # Spark's timestamps (UTC): naive UTC, as pandas had them
            if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
                frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
        order = [c for c in ("ts", "partition", "offset") if c in frame.columns]
        # files come in no set order: rows in time order, as the stream made them
        return frame.sort_values(order, kind="stable", ignore_index=True) if order else frame
    # Parquet folders `date=<day>/*.parquet` (the Spark job's windows)
    if days is None:
        files = sorted(path.glob("date=*/*.parquet"))
    else:
        files = sorted(f for d in days for f in (path / f"date={d}").glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def remove_days_before(root: str | Path, cutoff: str, kind: str = "") -> list[str]:
    """Retention for derived stream output (never raw data): days older than `cutoff`
    (YYYY-MM-DD) are deleted from a table (their files go at the next vacuum) or, in a
    folder of Parquet days, removed. Returns what was removed."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", cutoff):
        raise ValueError(f"cutoff {cutoff!r}: expected a date YYYY-MM-DD")
    path = Path(root, kind)
    old = [d for d in output_days(root, kind) if d < cutoff]
    if not old:
        return []
    if is_table(path):
        from deltalake import DeltaTable

        DeltaTable(str(path)).delete(f"{PARTITION} < '{cutoff}'")
        return [f"{path} {PARTITION}={d}" for d in old]
    for day in old:
        shutil.rmtree(path / f"date={day}")
    return [str(path / f"date={d}") for d in old]
