"""PSI: a hand computation, no drift on the same distribution, drift on a shifted one."""

import math

import numpy as np
import pytest

from smoke_platform.core.drift import SIGNIFICANT_PSI, feature_drift, psi, status


def test_psi_equals_a_hand_computation():
    # Training 0..9 with 2 bins: the median edge at 4.5 puts 5 rows in each bin (50/50).
    # Live: 8 rows at or below 4.5 and 2 above (80/20).
    expected = np.arange(10.0)
    actual = np.array([0, 1, 1, 2, 3, 3, 4, 4, 8, 9], dtype=float)
    hand = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(expected, actual, bins=2) == pytest.approx(hand)


def test_same_distribution_is_stable_and_a_shift_drifts():
    rng = np.random.default_rng(0)
    train = rng.normal(50, 10, 20_000)
    assert psi(train, rng.normal(50, 10, 5_000)) < 0.02
    shifted = psi(train, rng.normal(60, 10, 5_000))
    assert shifted > SIGNIFICANT_PSI and status(shifted) == "drifted"
    assert status(0.15) == "moderate" and status(0.01) == "stable"
    assert status(float("nan")) == "no data" and math.isnan(psi(train, np.array([np.nan])))


def test_feature_table_is_sorted_most_drifted_first():
    import pandas as pd

    rng = np.random.default_rng(1)
    train = pd.DataFrame({"a": rng.normal(0, 1, 5_000), "b": rng.normal(0, 1, 5_000)})
    live = pd.DataFrame({"a": rng.normal(0, 1, 2_000), "b": rng.normal(3, 1, 2_000)})
    table = feature_drift(train, live, ["a", "b"])
    assert list(table["feature"]) == ["b", "a"]
    assert list(table["status"]) == ["drifted", "stable"]
    assert table.loc[0, "live_median"] == pytest.approx(3, abs=0.1)
