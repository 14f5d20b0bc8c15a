"""The stream's Delta tables and the partition state, without a broker (pure filesystem)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from streaming.sink import PartitionSink
from streaming.table_maintenance import copy_table, stats
from streaming.tables import (
    Tables,
    app_id,
    output_days,
    read_outputs,
    remove_days_before,
    to_arrow,
)


def _rows(n: int, start: int = 0, partition: int = 0, day: str = "2026-11-27") -> list[dict]:
    return [
        {"ts": f"{day}T10:00:00+00:00", "partition": partition, "offset": o, "p": 0.5}
        for o in range(start, start + n)
    ]


def test_a_replayed_batch_keeps_only_the_rows_past_the_tables_version(tmp_path):
    tables = Tables(tmp_path)
    apps = {0: app_id("g", "t", "id1", 0), 1: app_id("g", "t", "id1", 1)}
    tables.append("predictions", _rows(10) + _rows(5, partition=1), {apps[0]: 10, apps[1]: 5})
    # a replay cut differently: offsets 5..14 of partition 0 and 0..9 of partition 1
    replay = _rows(10, start=5) + _rows(10, partition=1)
    fresh = tables.new_rows("predictions", replay, apps)
    assert sorted((r["partition"], r["offset"]) for r in fresh) == sorted(
        [(0, o) for o in range(10, 15)] + [(1, o) for o in range(5, 10)]
    )
    tables.append("predictions", fresh, {apps[0]: 15, apps[1]: 10})
    rows = read_outputs(tmp_path, "predictions")
    assert len(rows) == 25 and not rows.duplicated(["partition", "offset"]).any()
    # another process sees the versions the commits recorded
    assert Tables(tmp_path).version("predictions", apps[0]) == 15
    assert Tables(tmp_path).version("predictions", app_id("g", "t", "id2", 0)) == -1


def test_the_schema_is_enforced_and_new_columns_merge_in(tmp_path):
    tables = Tables(tmp_path)
    first = [{**r, "note": None} for r in _rows(2)]  # nulls only: left out until a value
    tables.append("alerts", first)
    later = [{**r, "note": "hello"} for r in _rows(2, start=2)]
    tables.append("alerts", later)
    rows = read_outputs(tmp_path, "alerts")
    assert list(rows["note"].fillna("-")) == ["-", "-", "hello", "hello"]
    with pytest.raises(Exception, match="p"):  # text where the table holds numbers
        tables.append("alerts", [{**_rows(1, start=9)[0], "p": "not a number"}])
    assert len(read_outputs(tmp_path, "alerts")) == 4


def test_rows_go_to_arrow_as_their_frame_does_in_the_tables_types(tmp_path):
    """The worker's rows (dicts) go to Arrow column by column, without a frame: the same
    table as the frame of the same rows, whatever their keys, missing values and the
    kinds of their numbers."""
    tables = Tables(tmp_path)
    tables.append("predictions", [{**r, "n": 1.5, "flag": True} for r in _rows(2)])
    schema = pa.schema(tables.table("predictions").schema().to_arrow())
    rows = [
        {**_rows(1, start=2)[0], "n": 2, "flag": None},  # an int where the table has floats
        {**_rows(1, start=3, day="2026-11-28")[0], "p": np.float64(0.25), "n": float("nan")},
        {"offset": 4, "partition": 0, "ts": "2026-11-28T11:00:00+00:00", "n": None},
    ]
    known = to_arrow(rows, schema)  # every key one the table has: read as one struct array
    assert known.equals(to_arrow(pd.DataFrame(rows), schema))
    assert known.column("n").to_pylist() == [2.0, None, None]  # NaN is missing, as in a frame
    assert known.column("date").to_pylist() == ["2026-11-27", "2026-11-28", "2026-11-28"]
    with pytest.raises(pa.ArrowInvalid, match="text"):  # a value its column cannot hold
        to_arrow([{**rows[0], "p": "text"}], schema)
    # before the table's first commit every type is inferred; a key of one row is a column
    unseen = [{**rows[0], "nothing": None}, {**rows[1], "late": "y"}]
    first = to_arrow(unseen)
    nulls_only = {"flag", "nothing"}  # no column of nulls only
    assert first.column_names == [*(c for c in rows[0] if c not in nulls_only), "late", "date"]
    assert first.column("late").to_pylist() == [None, "y"]
    assert first.column("n").to_pylist() == [2, None] and first.column("p").type == pa.float64()
    rows[1]["extra"] = "x"  # a key new to the table: column by column
    got = to_arrow(rows, schema)
    assert got.equals(to_arrow(pd.DataFrame(rows), schema))
    assert got.schema.field("n").type == pa.float64() and got.column_names[-1] == "extra"
    tables.append("predictions", rows)
    back = read_outputs(tmp_path, "predictions").sort_values("offset")
    assert back["n"].fillna(-1).tolist() == [1.5, 1.5, 2.0, -1, -1]
    assert back["p"].fillna(-1).tolist() == [0.5, 0.5, 0.5, 0.25, -1]
    assert back["extra"].fillna("-").tolist() == ["-", "-", "-", "x", "-"]
    assert back["flag"].tolist()[:2] == [True, True] and back["flag"].isna().sum() == 3


def test_days_are_partitions_read_by_predicate_and_removed_by_retention(tmp_path):
    tables = Tables(tmp_path)
    for i, day in enumerate(["2026-11-25", "2026-11-26", "2026-11-27"]):
        tables.append("predictions", _rows(3, start=3 * i, day=day))
    assert output_days(tmp_path, "predictions") == ["2026-11-25", "2026-11-26", "2026-11-27"]
    day = read_outputs(tmp_path, "predictions", ["2026-11-26"])
    assert list(day["offset"]) == [3, 4, 5] and "date" not in day.columns
    assert read_outputs(tmp_path, "predictions", []).empty
    removed = remove_days_before(tmp_path, "2026-11-27", "predictions")
    assert len(removed) == 2 and output_days(tmp_path, "predictions") == ["2026-11-27"]
    with pytest.raises(ValueError, match="cutoff"):
        remove_days_before(tmp_path, "2026-11-27' OR 1=1 --", "predictions")


@pytest.mark.parametrize(("as_frame", "naive"), [(False, False), (True, False), (False, True)])
def test_a_reading_is_filed_under_its_utc_day_whatever_offset_it_was_sent_with(
    tmp_path, as_frame, naive
):
    """Days are UTC days (retention, compaction and `WHERE date = ...` rely on it): 01:00 at
    +14:00 is the day before, 12:10 at -12:00 the day after; a time without an offset
    is UTC already."""
    sent = [
        ("2026-12-07T01:00:00+14:00", "2026-12-06"),
        ("2026-12-06T12:10:00-12:00", "2026-12-07"),
        ("2026-12-06T23:59:59.999999Z", "2026-12-06"),
        ("2026-12-07T00:30:00+0100", "2026-12-06"),
    ] + [("2026-12-06T23:30:00", "2026-12-06")] * naive  # a time without an offset
    rows = [{"ts": ts, "partition": 0, "offset": o} for o, (ts, _) in enumerate(sent)]
    Tables(tmp_path).append("predictions", pd.DataFrame(rows) if as_frame else rows)
    for day in ("2026-12-06", "2026-12-07"):
        got = read_outputs(tmp_path, "predictions", [day])
        assert sorted(got["ts"]) == sorted(ts for ts, d in sent if d == day)


def test_offsetless_events_of_a_replay_across_the_version_are_kept_once(tmp_path):
    tables = Tables(tmp_path)
    app = {0: app_id("g", "t", None, 0)}
    event = {"trouble_id": "stuck:s1@x", "event": "open", "partition": 0}
    event["ts"] = "2026-11-27T10:00:00+00:00"
    tables.append("trouble", [event], {app[0]: 20})
    other = {**event, "trouble_id": "stuck:s2@x"}
    # a batch across the version (10..29): what is held is not written again
    assert tables.new_events("trouble", [event, other], {0: 10}, app) == [other]
    assert tables.new_events("trouble", [event], {0: 20}, app) == [event]  # past it: all


def test_a_new_topic_id_voids_the_partition_state(tmp_path):
    """Offsets mean something only within one incarnation of a topic (ids in standard
    base64 may hold '/' and '+')."""
    old = PartitionSink(tmp_path, "t", topic_id="AaIdaaH/e3OHWCJ9WN+mNQ")
    old.write(0, {**old.load(0), "hwm": 9})
    assert old.load(0)["hwm"] == 9
    new = PartitionSink(tmp_path, "t", topic_id="Zx1dbbH_e3OHWCJ9WNumNQ")
    assert new.load(0)["hwm"] == -1
    assert app_id("g", "t", "AaIdaaH/e3OHWCJ9WN+mNQ", 0) != app_id(
        "g", "t", "Zx1dbbH_e3OHWCJ9WNumNQ", 0
    )


def test_parquet_day_folders_are_still_read(tmp_path):
    """The Spark job's windows are folders of Parquet days."""
    folder = tmp_path / "date=2026-11-27"
    folder.mkdir()
    pd.DataFrame(_rows(3)).to_parquet(folder / "batch-00000001.parquet", index=False)
    assert len(read_outputs(tmp_path, "", ["2026-11-27"])) == 3
    assert output_days(tmp_path) == ["2026-11-27"]


def test_a_copy_holds_one_version_whatever_was_committed_after_it(tmp_path):
    tables = Tables(tmp_path / "live")
    for i, day in enumerate(["2026-11-25", "2026-11-26", "2026-11-27"]):
        tables.append("predictions", _rows(2, start=2 * i, day=day))
    from deltalake import DeltaTable

    DeltaTable(str(tables.path("predictions"))).create_checkpoint()  # at version 2
    tables.append("predictions", _rows(2, start=6, day="2026-11-28"))  # a writer goes on
    version, _files = copy_table(tables.path("predictions"), tmp_path / "copy" / "t", version=1)
    assert version == 1
    copied = read_outputs(tmp_path / "copy", "t")
    assert list(copied["offset"]) == [0, 1, 2, 3]  # version 1: two commits, nothing newer
    assert stats(tmp_path / "copy" / "t")["version"] == 1
    newest, _ = copy_table(tables.path("predictions"), tmp_path / "copy" / "u")
    assert newest == 3 and len(read_outputs(tmp_path / "copy", "u")) == 8


_WRITER = """
import sys, time
from streaming.tables import Tables, app_id
i, root, start = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
tables = Tables(root, writer=f"w{i}")
while time.time() < start:
    time.sleep(0.001)
for b in range(20):
    rows = [{"ts": "2026-11-20T00:00:00+00:00", "partition": i, "offset": b * 10 + k, "p": 0.1}
            for k in range(10)]
    if i == 1 and b >= 10:
        rows = [{**r, "note": "a new column"} for r in rows]  # a schema change mid-race
    tables.append("predictions", rows, {app_id("g", "t", None, i): b * 10 + 10})
"""


def test_writers_racing_to_create_and_append_lose_no_commit(tmp_path):
    """Three processes create the same table at once and append 20 commits each, one of
    them adding a column: every commit lands, once."""
    import subprocess
    import sys
    import time

    start = str(time.time() + 3)  # all three past their imports
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(i), str(tmp_path), start])
        for i in range(3)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    rows = read_outputs(tmp_path, "predictions")
    assert len(rows) == 600 and not rows.duplicated(["partition", "offset"]).any()
    assert rows["note"].notna().sum() == 100
    from deltalake import DeltaTable

    writers = [c.get("writer") for c in DeltaTable(str(tmp_path / "predictions")).history()]
    assert sorted(w for w in writers if w) == sorted(["w0", "w1", "w2"] * 20)
    tables = Tables(tmp_path)
    assert [tables.version("predictions", app_id("g", "t", None, i)) for i in range(3)] == [200] * 3


def test_pending_batches_commit_together_and_a_lost_partitions_rows_are_dropped(tmp_path):
    from streaming.tables import PendingCommits

    tables = Tables(tmp_path)
    pending = PendingCommits(tables, interval_s=3600, max_rows=25)
    apps = {p: app_id("g", "t", None, p) for p in (0, 1)}
    for first in (0, 10):  # two batches of both partitions: 20 rows, not due yet
        for p in (0, 1):
            pending.add("predictions", _rows(5, start=first, partition=p))
            pending.mark(p, apps[p], first + 5, {"hwm": first + 4})
    assert not pending.due() and tables.table("predictions") is None
    pending.drop([1])  # lost to another member: it replays them
    pending.add("predictions", _rows(20, start=20))
    assert pending.due()  # 30 rows held
    states = {}
    pending.flush(lambda p, state: states.update({p: state}))
    rows = read_outputs(tmp_path, "predictions")
    assert set(rows["partition"]) == {0} and len(rows) == 30
    assert states == {0: {"hwm": 14}}  # the state after its last batch, after the commit
    assert tables.version("predictions", apps[0]) == 15
    assert tables.version("predictions", apps[1]) == -1
    assert not pending.due() and pending.since is None


def test_compaction_while_a_writer_appends_to_the_same_day_loses_nothing(tmp_path):
    import subprocess
    import sys
    import time

    from streaming.table_maintenance import compact

    tables = Tables(tmp_path)
    for b in range(10):
        tables.append("predictions", _rows(10, start=1_000 + 10 * b, partition=9, day="2026-11-20"))
    start = str(time.time() + 2)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, "0", str(tmp_path), start])
    while time.time() < float(start):
        time.sleep(0.01)
    merged = [compact(tmp_path / "predictions", "2026-11-20") for _ in range(4)]
    assert writer.wait(120) == 0
    assert merged[0]["files_removed"] >= 10
    rows = read_outputs(tmp_path, "predictions")
    assert len(rows) == 300 and not rows.duplicated(["partition", "offset"]).any()


def test_a_flush_behind_the_table_neither_lowers_its_version_nor_writes_twice(tmp_path):
    """A worker killed after its predictions commit but before its state write: the next
    owner replays behind the table's version, and a flush mid-replay (for its other
    partitions) must keep the table's version and add none of the rows it holds."""
    from streaming.tables import PendingCommits

    apps = {p: app_id("g", "t", None, p) for p in (0, 1)}
    Tables(tmp_path).append("predictions", _rows(100), {apps[0]: 100})  # the killed worker
    tables = Tables(tmp_path)
    pending = PendingCommits(tables, interval_s=3600, max_rows=10**6)
    pending.add("predictions", _rows(50, start=20))  # replaying 20..69 of partition 0
    pending.mark(0, apps[0], 70, {"hwm": 69})
    pending.add("predictions", _rows(10, partition=1))
    pending.mark(1, apps[1], 10, {"hwm": 9})
    pending.flush(lambda p, state: None)
    assert tables.version("predictions", apps[0]) == 100  # not 70
    rows = read_outputs(tmp_path, "predictions")
    assert len(rows) == 110 and not rows.duplicated(["partition", "offset"]).any()
    # a flush made again after a failure half-way commits nothing twice either
    pending.add("predictions", _rows(10, partition=1))
    pending.mark(1, apps[1], 10, {"hwm": 9})
    pending.flush(lambda p, state: None)
    assert len(read_outputs(tmp_path, "predictions")) == 110


def test_a_commit_taken_behind_the_stream_and_failing_is_put_back_in_front(tmp_path):
    """The worker hands what is pending to its commit thread (`take`); batches gather for
    the next commit meanwhile. A failed commit goes back in front of them (`put_back`):
    the next commit holds both, the state of each partition its latest."""
    from streaming.tables import PendingCommits

    tables = Tables(tmp_path)
    pending = PendingCommits(tables, interval_s=3600, max_rows=10)
    apps = {p: app_id("g", "t", None, p) for p in (0, 1)}
    pending.add("predictions", _rows(12))
    pending.mark(0, apps[0], 12, {"hwm": 11})
    assert pending.due()
    taken = pending.take(Tables(tmp_path))  # the commit thread's own table handles
    assert not pending.due() and pending.since is None and not pending.rows["predictions"]
    assert taken.versions == {0: (apps[0], 12)} and len(taken.rows["predictions"]) == 12
    pending.add("predictions", _rows(3, start=12) + _rows(4, partition=1))
    pending.mark(0, apps[0], 15, {"hwm": 14})
    pending.mark(1, apps[1], 4, {"hwm": 3})
    assert not pending.due()  # 7 rows since: the interval counts from these batches

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    taken.tables.append = disk_full  # a fault this test cannot cause for real
    states: dict[int, dict] = {}
    with pytest.raises(OSError):
        taken.flush(lambda p, state: states.update({p: state}))
    assert states == {} and tables.table("predictions") is None  # no state ahead of tables
    pending.put_back(taken)
    assert pending.due()  # 19 rows again
    pending.flush(lambda p, state: states.update({p: state}))
    rows = read_outputs(tmp_path, "predictions")
    assert len(rows) == 19 and not rows.duplicated(["partition", "offset"]).any()
    assert states == {0: {"hwm": 14}, 1: {"hwm": 3}}
    assert tables.version("predictions", apps[0]) == 15


def test_a_flush_made_again_after_its_state_write_failed_appends_no_trouble_row_twice(tmp_path):
    """Trouble rows carry no offsets, so the tables' versions cannot filter them: a flush
    whose tables committed and whose state write failed (a full disk) commits nothing of
    them again when it is made again."""
    from streaming.tables import PendingCommits

    tables = Tables(tmp_path)
    pending = PendingCommits(tables, interval_s=3600, max_rows=10**6)
    app = app_id("g", "t", None, 0)
    pending.add("predictions", _rows(5))
    pending.add("trouble", [{**r, "trouble_id": f"x{r['offset']}"} for r in _rows(2)])
    pending.mark(0, app, 5, {"hwm": 4})

    def disk_full(_partition, _state):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        pending.flush(disk_full)
    states: dict[int, dict] = {}
    pending.flush(lambda p, state: states.update({p: state}))
    assert len(read_outputs(tmp_path, "trouble")) == 2
    assert len(read_outputs(tmp_path, "predictions")) == 5
    assert states == {0: {"hwm": 4}}
