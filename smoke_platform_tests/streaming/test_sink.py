"""The output sink's state and file handling, without a broker (pure filesystem)."""

import pandas as pd

from streaming.sink import PartitionSink, read_outputs


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"ts": ["2026-11-27T10:00:00+00:00"] * n, "offset": range(start, start + n)}
    )


def test_a_new_topic_id_archives_the_old_files_even_when_the_id_has_slashes(tmp_path):
    """librdkafka prints topic ids in standard base64, which may contain '/' and '+'; the
    archived files must still be plain files next to the live ones and still be read."""
    old = PartitionSink(tmp_path, "t", topic_id="AaIdaaH/e3OHWCJ9WN+mNQ")
    state = old.load(0)
    old.write(0, 0, 9, {"predictions": _frame(10)}, {**state, "hwm": 9})

    new = PartitionSink(tmp_path, "t", topic_id="Zx1dbbH_e3OHWCJ9WNumNQ")
    fresh = new.load(0)
    assert fresh["hwm"] == -1  # the old incarnation's offsets are void
    day = tmp_path / "predictions" / "date=2026-11-27"
    archived = [p for p in day.iterdir() if p.name.startswith("x")]
    assert len(archived) == 1 and archived[0].is_file()
    assert "/" not in archived[0].name and "+" not in archived[0].name
    new.write(0, 0, 4, {"predictions": _frame(5, 100)}, {**fresh, "hwm": 4})
    assert len(read_outputs(tmp_path, "predictions")) == 15  # nothing lost, nothing doubled


def test_files_past_the_committed_offset_are_removed_on_load(tmp_path):
    sink = PartitionSink(tmp_path, "t")
    state = sink.load(0)
    sink.write(0, 0, 9, {"predictions": _frame(10)}, {**state, "hwm": 9})
    # a crash after writing a batch's files but before its state: the orphan is removed
    orphan = tmp_path / "predictions" / "date=2026-11-27" / "p0-o000000000010-000000000019.parquet"
    _frame(10, 10).to_parquet(orphan, index=False)
    assert sink.load(0)["hwm"] == 9
    assert not orphan.exists()
    assert len(read_outputs(tmp_path, "predictions")) == 10
