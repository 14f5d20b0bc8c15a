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


def test_ks_distance_equals_a_hand_computation():
    from smoke_platform.core.drift import ks_distance

    # ECDFs of 0..9 and 5..14: the largest gap is 0.5 (at 4.x: 0.5 against 0.0).
    assert ks_distance(np.arange(10.0), np.arange(5.0, 15.0)) == pytest.approx(0.5)
    assert ks_distance(np.arange(10.0), np.arange(10.0)) == 0.0
    assert math.isnan(ks_distance(np.arange(3.0), np.array([np.nan])))


def test_a_psi_drift_the_ks_distance_does_not_corroborate_is_moderate():
    import pandas as pd

    from smoke_platform.core.drift import KS_CORROBORATION

    # A concentration piled at its floor with a thin band above it: training 89.5 % at 0,
    # 0.5 % at 1, 10 % in a heavy tail. The deciles collapse to the edges 0 and 1, so the
    # thin band is a bin of its own; live moves 9 % of readings from the floor into it.
    # PSI jumps on that one small bin while the distributions differ by 0.09 at most.
    rng = np.random.default_rng(2)

    def sample(n, zeros, ones):
        tail = 2 + rng.pareto(1.5, n - round(n * zeros) - round(n * ones)) * 100
        return np.r_[np.zeros(round(n * zeros)), np.ones(round(n * ones)), tail]

    train, live = sample(20_000, 0.895, 0.005), sample(5_000, 0.805, 0.095)
    table = feature_drift(pd.DataFrame({"tvoc": train}), pd.DataFrame({"tvoc": live}), ["tvoc"])
    row = table.iloc[0]
    assert row["psi"] >= SIGNIFICANT_PSI and row["ks"] < KS_CORROBORATION
    assert row["status"] == "moderate"
    assert status(0.3, ks=0.2) == "drifted" and status(0.3, ks=0.05) == "moderate"
