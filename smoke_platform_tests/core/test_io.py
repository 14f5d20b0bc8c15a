"""Kaggle-format files load with the exact column mapping of DATA.md."""

import pandas as pd
import pytest

from smoke_platform.core.io import KaggleFormatError, read_kaggle_csv, to_canonical, to_kaggle
from smoke_platform.core.quality import run_all_checks
from smoke_platform.core.schema import KAGGLE_COLUMNS


def test_sample_loads_with_correct_mapping(kaggle_sample_csv):
    df = to_canonical(read_kaggle_csv(kaggle_sample_csv))
    assert len(df) == 6
    first = df.iloc[0]
    assert first["ts"] == pd.Timestamp(1654733331, unit="s", tz="UTC")
    assert first["temperature_c"] == 20.0
    assert first["humidity_pct"] == 57.36
    assert first["raw_h2"] == 12306 and first["raw_ethanol"] == 18520
    assert first["pressure_hpa"] == 939.735
    fire = df.iloc[4]
    assert (fire["row_index"], fire["cnt"], fire["fire_alarm"]) == (31269, 6275, 1)
    assert (fire["tvoc_ppb"], fire["nc0_5"], fire["nc2_5"]) == (185, 5.98, 0.021)
    assert df["row_index"].tolist() == [0, 1, 9, 27, 31269, 31294]


def test_sessions_follow_counter_and_clock(kaggle_sample_csv):
    df = to_canonical(read_kaggle_csv(kaggle_sample_csv))
    # The normal session (CNT 0..27) and the fire excerpt (CNT 6275..) are separate.
    assert df["session_id"].tolist() == ["s0000"] * 4 + ["s0001"] * 2


def test_real_rows_pass_every_quality_check(kaggle_sample_csv):
    df = to_canonical(read_kaggle_csv(kaggle_sample_csv))
    outcomes = run_all_checks(df)
    assert all(o.passed for o in outcomes.values()), [o.describe() for o in outcomes.values()]


def test_missing_column_is_a_clear_error(tmp_path, kaggle_sample_csv):
    bad = tmp_path / "bad.csv"
    bad.write_text(kaggle_sample_csv.read_text().replace("Raw H2", "RawH2"))
    with pytest.raises(KaggleFormatError, match=r"missing column\(s\) \['Raw H2'\]"):
        read_kaggle_csv(bad)


def test_round_trip_to_kaggle(kaggle_sample_csv, tmp_path):
    original = read_kaggle_csv(kaggle_sample_csv)
    back = to_kaggle(to_canonical(original))
    assert list(back.columns) == list(KAGGLE_COLUMNS)
    pd.testing.assert_frame_equal(
        back.reset_index(drop=True), original.reset_index(drop=True), check_dtype=False
    )


@pytest.mark.parametrize("fraction", [0.0, 0.25])
def test_plain_records_are_the_frames_rows_as_plain_values_with_iso_times(
    kaggle_sample_csv, fraction
):
    from smoke_platform.core.io import plain_records

    df = to_canonical(read_kaggle_csv(kaggle_sample_csv))
    df["ts"] = df["ts"] + pd.Timedelta(seconds=fraction)
    df.loc[2, "fire_alarm"] = pd.NA  # an optional value left unset
    got = list(plain_records(df))
    expected = df.assign(ts=[t.isoformat() for t in df["ts"]]).to_dict("records")
    assert len(got) == len(expected) == 6
    for row, want in zip(got, expected, strict=True):
        assert list(row) == list(want)
        for key, value in row.items():
            assert value is want[key] or value == want[key], key  # pd.NA is itself
            assert type(value) is type(want[key]), (key, type(value), type(want[key]))
    assert got[0]["ts"].endswith("+00:00") and pd.Timestamp(got[0]["ts"]) == df["ts"].iloc[0]
