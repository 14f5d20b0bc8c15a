"""The one feature function."""

import pandas as pd

from smoke_platform.core.features import (
    FEATURE_COLUMNS,
    FORBIDDEN_FEATURES,
    build_features,
    frame_from_readings,
)
from smoke_platform.core.schema import parse_reading


def test_no_session_identifier_is_a_feature():
    assert not FORBIDDEN_FEATURES & set(FEATURE_COLUMNS)
    assert not {"utc", "cnt", "ts"} & {c.lower() for c in FEATURE_COLUMNS}


def test_features_ignore_identifiers(generated):
    a = build_features(generated)
    shuffled = generated.assign(cnt=0, ts=pd.Timestamp("2030-01-01", tz="UTC"), session_id="x")
    pd.testing.assert_frame_equal(a, build_features(shuffled))


def test_single_reading_equals_batch_row(generated):
    batch = build_features(generated)
    for i in (0, 123, len(generated) - 1):
        row = generated.iloc[i].to_dict()
        model = parse_reading({k: v for k, v in row.items() if k != "row_index" and pd.notna(v)})
        single = build_features(frame_from_readings([model]))
        pd.testing.assert_series_equal(
            single.iloc[0], batch.iloc[i], check_names=False, check_exact=False, rtol=1e-12
        )


def test_features_are_finite(generated):
    feats = build_features(generated)
    assert list(feats.columns) == list(FEATURE_COLUMNS)
    assert feats.notna().all().all()
