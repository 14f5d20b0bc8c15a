"""Rates of rise: one definition, whether computed over a whole data set (training, the
reference readings) or batch by batch from kept history (the stream worker, Spark)."""

import json

import numpy as np
import pandas as pd
import pytest

from smoke_platform.core.features import (
    HISTORY_SECONDS,
    MAX_HISTORY_ROWS,
    RISE_FEATURES,
    RISE_LEVELS,
    add_rises,
    build_features,
    decode_history,
    frame_rises,
    rise_levels,
)
from smoke_platform.core.io import to_records
from smoke_platform.core.simulate import generate_readings
from streaming.alerts import AlertConfig
from streaming.processor import InMessage, Processor
from streaming.scoring import Scores


def _reference_rises(frame: pd.DataFrame) -> np.ndarray:
    """Reading by reading: its level minus the lowest level of the same sensor over the
    readings at most HISTORY_SECONDS older (itself included)."""
    levels = rise_levels(frame)
    t = pd.to_datetime(frame["ts"], utc=True).astype("int64").to_numpy() / 1e9
    sensor = frame["sensor_id"].to_numpy()
    out = np.empty_like(levels)
    for i in range(len(frame)):
        window = (sensor == sensor[i]) & (t <= t[i]) & (t >= t[i] - HISTORY_SECONDS)
        out[i] = levels[i] - levels[window].min(axis=0)
    return out


@pytest.fixture(scope="module")
def stream():
    """Two sensors' readings in arrival order, one with a silent gap of two minutes."""
    frame = generate_readings(n_rows=1_500, seed=7, n_sensors=2).sort_values("ts", kind="stable")
    late = frame["ts"] > frame["ts"].iloc[len(frame) // 2]
    frame.loc[late & (frame["sensor_id"] == "sensor-001"), "ts"] += pd.Timedelta(minutes=2)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def test_rises_equal_a_reading_by_reading_reference(stream):
    got = add_rises(stream.sample(frac=1, random_state=3))  # any input order
    expected = _reference_rises(stream.sample(frac=1, random_state=3))
    np.testing.assert_allclose(got[list(RISE_FEATURES)].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (got[list(RISE_FEATURES)] >= 0).all().all()
    # A fire's start rises; readings of a steady room barely do.
    assert got["rise_tvoc_ppb"].max() > 1.0


def test_batches_with_kept_history_give_the_whole_streams_rises(stream):
    whole = add_rises(stream)[list(RISE_FEATURES)].to_numpy()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(stream)), size=40, replace=False))
    history: dict = {}
    parts = []
    for batch in np.split(np.arange(len(stream)), cuts):
        shuffled = stream.iloc[rng.permutation(batch)]  # order within a batch does not matter
        part, history = frame_rises(history, shuffled)
        parts.append(part)
        for rows in history.values():  # only the last HISTORY_SECONDS are kept
            assert rows[:, 0].max() - rows[:, 0].min() <= HISTORY_SECONDS
    got = pd.concat(parts).loc[stream.index, list(RISE_FEATURES)].to_numpy()
    np.testing.assert_array_equal(got, whole)


def test_without_history_a_reading_is_scored_as_steady(stream):
    """The single-reading path: no rises sent, or null ones, read as 0."""
    plain = build_features(stream.iloc[:5])
    nulls = build_features(stream.iloc[:5].assign(**{c: None for c in RISE_FEATURES}))
    assert (plain[list(RISE_FEATURES)] == 0).all().all()
    pd.testing.assert_frame_equal(plain, nulls)
    with_rises = build_features(add_rises(stream))
    assert (with_rises[list(RISE_FEATURES)] > 0).any().all()


class Recorder:
    """Scores nothing of interest; keeps what the worker hands the model."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def score(self, records):
        self.records.extend(dict(r) for r in records)
        return Scores(np.zeros(len(records)), np.zeros(len(records), bool), "test:1", "local")


def test_the_worker_supplies_the_training_rises_across_batches_and_a_restart(stream):
    """Parity of training and worker: what the model is given for each reading, over
    batches and over a restart from the partition's stored state, is what training
    computes over the whole stream (a producer's own `rise_*` values are replaced)."""
    records = to_records(stream)
    records[10]["rise_tvoc_ppb"] = 11.0  # a client's claim: not what the worker measures
    msgs = [
        InMessage("t", 0, i, r["sensor_id"].encode(), json.dumps(r).encode())
        for i, r in enumerate(records)
    ]
    recorder = Recorder()
    first = Processor(AlertConfig(), 65_536)
    for start in range(0, 700, 97):
        first.process(msgs[start : min(start + 97, 700)], recorder)
    stored = json.loads(json.dumps(first.snapshot(0)))  # as the sink stores it
    for sensor in stored["sensors"].values():  # each sensor's last 30 s, exactly
        rows = decode_history(sensor["history"])
        assert rows.shape[1] == 1 + len(RISE_LEVELS)
        assert 0 < rows[:, 0].max() - rows[:, 0].min() <= HISTORY_SECONDS
    restarted = Processor(AlertConfig(), 65_536)
    restarted.load(0, stored)
    for start in range(700, len(msgs), 131):
        restarted.process(msgs[start : start + 131], recorder)
    got = np.array([[r[c] for c in RISE_FEATURES] for r in recorder.records])
    np.testing.assert_allclose(got, add_rises(stream)[list(RISE_FEATURES)].to_numpy(), atol=1e-12)


def test_a_stored_history_that_cannot_be_read_starts_afresh():
    """A state written by a version that measured other channels, or damaged: no crash,
    the history is rebuilt from the next readings."""
    from smoke_platform.core.features import encode_history

    rows = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(decode_history(encode_history(rows)), rows)
    for text in ("", None, "not base64!", encode_history(np.arange(10.0).reshape(2, 5))):
        assert decode_history(text).shape == (0, 1 + len(RISE_LEVELS))


def test_a_sensor_flooding_one_timestamp_keeps_a_bounded_history(stream):
    """A hostile or broken device sending thousands of readings stamped the same second:
    its kept history (and so the state written with every batch, and the work per
    reading) stays at MAX_HISTORY_ROWS; the batch-wise rises still equal the whole
    stream's."""
    one = stream.iloc[[100]]
    flood = pd.concat([one] * 3 * MAX_HISTORY_ROWS, ignore_index=True)
    rng = np.random.default_rng(2)
    flood["tvoc_ppb"] = rng.uniform(0, 5_000, len(flood))
    frame = pd.concat([stream.iloc[:100], flood], ignore_index=True)
    history: dict = {}
    parts = []
    for batch in np.array_split(np.arange(len(frame)), 4):
        part, history = frame_rises(history, frame.iloc[batch])
        parts.append(part)
        assert max(len(rows) for rows in history.values()) <= MAX_HISTORY_ROWS
    got = pd.concat(parts)[list(RISE_FEATURES)].to_numpy()
    np.testing.assert_array_equal(got, add_rises(frame)[list(RISE_FEATURES)].to_numpy())
    # Each flooded reading is measured against at most MAX_HISTORY_ROWS before it.
    levels = rise_levels(flood)[:, 0]
    last = len(flood) - 1
    lowest = levels[last - MAX_HISTORY_ROWS : last + 1].min()
    assert got[-1, 0] == pytest.approx(levels[last] - lowest, abs=1e-12)
