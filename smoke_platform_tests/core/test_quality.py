"""Each quality check passes on clean data and fails, naming column/count/values, on bad data."""

import pytest

from smoke_platform.core.quality import (
    STUCK_RUN_SECONDS,
    quality_schemas,
    run_all_checks,
    run_check,
)


def _out_of_range(df):
    df.loc[10:14, "humidity_pct"] = 130.0
    return "humidity_pct", 5, "130.0"


def _nulls(df):
    df.loc[[3, 8, 21], "pm2_5"] = None
    return "pm2_5", 3, "nan"


def _wrong_dtype(df):
    df["tvoc_ppb"] = df["tvoc_ppb"].astype(str)
    return "tvoc_ppb", 1, "object"


def _duplicate(df):
    df.loc[50, "ts"] = df.loc[49, "ts"]
    return "ts", 2, str(df.loc[49, "ts"])


def _out_of_order(df):
    df.loc[[60, 61], "ts"] = df.loc[[61, 60], "ts"].to_numpy()
    return "ts", 1, None


def _stuck(df):
    session = df["session_id"] == df["session_id"].value_counts().idxmax()
    rows = df.index[session][: STUCK_RUN_SECONDS + 5]
    df.loc[rows, "raw_ethanol"] = 19_000.0
    return "raw_ethanol", len(rows), "19000.0"


CORRUPTIONS = {
    "physical_ranges": _out_of_range,
    "no_nulls": _nulls,
    "schema": _wrong_dtype,
    "unique_readings": _duplicate,
    "time_ordered": _out_of_order,
    "no_stuck_sensors": _stuck,
}


def test_every_check_has_a_corruption_test():
    assert set(CORRUPTIONS) == set(quality_schemas())


def test_clean_generated_data_passes_every_check(generated):
    outcomes = run_all_checks(generated)
    assert all(o.passed for o in outcomes.values()), [o.describe() for o in outcomes.values()]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_check_fails_on_corrupted_frame(generated, name):
    bad = generated.copy()
    column, count, sample = CORRUPTIONS[name](bad)
    outcome = run_check(name, bad)
    assert not outcome.passed
    assert column in outcome.by_column, outcome.describe()
    assert outcome.by_column[column]["count"] == count
    if sample is not None:
        assert sample in outcome.by_column[column]["samples"]
    text = outcome.describe()
    assert f"column {column!r}" in text and f"{count} bad rows" in text
    # Only this check (and the ones it implies) fails: the others stay green.
    others = {n: run_check(n, bad).passed for n in CORRUPTIONS if n != name}
    implied = {"schema": {"physical_ranges"}, "unique_readings": {"time_ordered"}}.get(name, set())
    assert all(ok for n, ok in others.items() if n not in implied), others


def test_short_constant_stretches_are_not_stuck(generated):
    bad = generated.copy()
    bad.loc[0 : STUCK_RUN_SECONDS - 10, "pressure_hpa"] = 935.0
    assert run_check("no_stuck_sensors", bad).passed


def test_sensor_floors_are_not_stuck(generated):
    """TVOC 0 / eCO2 400 / PM 0 in clean air are floors, not a stuck sensor (DATA.md rows)."""
    clean = generated.copy()
    session = clean["session_id"] == clean["session_id"].value_counts().idxmax()
    clean.loc[session, ["tvoc_ppb", "pm1_0", "pm2_5", "nc0_5"]] = 0.0
    clean.loc[session, "eco2_ppm"] = 400.0
    assert session.sum() > STUCK_RUN_SECONDS
    assert run_check("no_stuck_sensors", clean).passed


def test_shares_at_the_ceiling_and_the_real_range_they_are_judged_against():
    import pandas as pd

    from smoke_platform.core.quality import ceiling_ranges, ceiling_shares, ceilings_outside

    reference = pd.DataFrame(
        {
            "excerpt": ["a"] * 4 + ["b"] * 4,
            "tvoc_ppb": [60_000, 10, 10, 10] + [10] * 4,  # one excerpt 25 % saturated
            "pm2_5": [1.0] * 8,
        }
    )
    ranges = ceiling_ranges(reference)
    assert ranges["tvoc_ppb"] == (0.0, 0.25) and ranges["pm2_5"] == (0.0, 0.0)
    data = pd.DataFrame({"tvoc_ppb": [60_000] * 30 + [5] * 70, "pm2_5": [100_000] + [2.0] * 99})
    shares = ceiling_shares(data)
    assert shares == {"tvoc_ppb": 0.3, "pm2_5": 0.01}
    # 30 % is 5 points past the real 25 % (tolerance 1 point); 1 % is within 0 + 1 point.
    assert ceilings_outside(shares, ranges) == [
        "tvoc_ppb: 30.0% of readings at its ceiling 60000, real sensors 0.0%-25.0%"
    ]
