"""The generator: deterministic per seed, inside DATA.md's envelope, realistic sessions."""

import itertools

import pandas as pd
import pytest

from smoke_platform.core.quality import run_all_checks
from smoke_platform.core.simulate import (
    FIRE_SCENARIOS,
    NUISANCE_SCENARIOS,
    SCENARIOS,
    generate_kaggle,
    generate_readings,
    live_readings,
)

# Approximate ranges of the real file (DATA.md): the generator must stay inside them.
ENVELOPE = {
    "temperature_c": (-22, 60),
    "humidity_pct": (10.7, 75.2),
    "tvoc_ppb": (0, 60_000),
    "eco2_ppm": (400, 60_000),
    "raw_h2": (10_700, 13_800),
    "raw_ethanol": (15_300, 21_400),
    "pressure_hpa": (930.8, 939.9),
    "pm1_0": (0, 14_000),
    "pm2_5": (0, 45_000),
    "nc0_5": (0, 61_000),
    "nc1_0": (0, 52_000),
    "nc2_5": (0, 30_000),
}


@pytest.fixture(scope="module")
def default_frame():
    return generate_readings(seed=3)


def test_same_seed_same_rows_other_seed_other_rows():
    a, b, c = (
        generate_kaggle(4_000, seed=1),
        generate_kaggle(4_000, seed=1),
        generate_kaggle(4_000, seed=2),
    )
    pd.testing.assert_frame_equal(a, b)
    assert not a.drop(columns=["session_id"]).equals(c.drop(columns=["session_id"]))


def test_default_size_and_class_balance(default_frame):
    assert len(default_frame) == 60_000
    share = default_frame["fire_alarm"].mean()
    assert 0.6 <= share <= 0.8, share  # real file: 71.5 %
    assert default_frame["session_id"].nunique() >= 40
    assert set(default_frame["scenario"]) == set(SCENARIOS)


@pytest.mark.parametrize("column", sorted(ENVELOPE))
def test_values_stay_in_the_real_files_envelope(default_frame, column):
    lo, hi = ENVELOPE[column]
    assert default_frame[column].between(lo, hi).all()


def test_generated_data_passes_every_quality_check(default_frame):
    outcomes = run_all_checks(default_frame)
    assert all(o.passed for o in outcomes.values()), [o.describe() for o in outcomes.values()]


def test_counter_restarts_per_session_and_time_is_1hz(default_frame):
    for _, session in itertools.islice(default_frame.groupby("session_id"), 10):
        assert session["cnt"].tolist() == list(range(len(session)))
        assert (session["ts"].diff().dropna() == pd.Timedelta(seconds=1)).all()


def test_fire_sessions_start_quiet_then_build(default_frame):
    fires = default_frame[default_frame["scenario"].isin(FIRE_SCENARIOS)]
    for _, session in itertools.islice(fires.groupby("session_id"), 10):
        labels = session["fire_alarm"].to_numpy()
        onset = int(labels.argmax())
        assert 10 <= onset <= 90 and labels[:onset].sum() == 0 and labels[onset:].all()
        before = session["nc0_5"].iloc[:onset].median()
        later = session["nc0_5"].iloc[onset + 120 : onset + 180].median()
        assert later > before  # particles build up after the onset


def test_nuisance_sessions_never_alarm(default_frame):
    nuisance = default_frame[default_frame["scenario"].isin(NUISANCE_SCENARIOS)]
    assert len(nuisance) > 0 and nuisance["fire_alarm"].sum() == 0


def test_nuisance_raises_particles_without_being_fire(default_frame):
    dust = default_frame[default_frame["scenario"] == "dust"]
    normal = default_frame[default_frame["scenario"] == "normal_indoor"]
    assert dust["pm2_5"].quantile(0.95) > 3 * normal["pm2_5"].quantile(0.95)


def test_live_stream_is_endless_ordered_and_multi_sensor():
    rows = list(itertools.islice(live_readings(seed=5, n_sensors=4), 5_000))
    times = [r["ts"] for r in rows]
    assert times == sorted(times)
    assert {r["sensor_id"] for r in rows} == {f"sensor-{i:03d}" for i in range(4)}
    again = list(itertools.islice(live_readings(seed=5, n_sensors=4), 50))
    assert again == rows[:50]


def test_live_stream_can_be_restricted_to_scenarios():
    rows = itertools.islice(live_readings(seed=1, n_sensors=2, scenarios=["wood_fire"]), 300)
    assert {r["scenario"] for r in rows} == {"wood_fire"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_live_readings_are_the_sessions_canonical_rows_as_sent(scenario):
    """The live stream builds its readings without a frame per session: each is the row
    the canonical frame of the same session gives, key order and Python types included."""
    import numpy as np

    from smoke_platform.core.io import plain_records, to_canonical
    from smoke_platform.core.simulate import _live_records, _session_columns, generate_session

    ids = {"sensor_id": "sensor-007", "session_id": f"live-1-7-{scenario}"}
    start = 1_765_000_000
    frame = generate_session(np.random.default_rng(11), scenario, **ids, start_epoch=start)
    expected = list(plain_records(to_canonical(frame)))
    cols = _session_columns(np.random.default_rng(11), scenario, start)
    got = list(_live_records(cols, **ids, scenario=scenario))
    assert len(got) == len(expected) > 100
    for mine, theirs in zip(got, expected, strict=True):
        assert list(mine) == list(theirs)
        assert mine == theirs
        assert [type(v) for v in mine.values()] == [type(v) for v in theirs.values()]
