"""Feature drift of live readings against the training data: the population stability index.

PSI = sum over bins of (live% - train%) * ln(live% / train%), with bins at the training
data's deciles (so each bin holds ~10 % of training rows). The usual reading, used
as the defaults here:

- PSI < 0.10: no meaningful shift;
- 0.10 <= PSI < 0.25: moderate shift, watch it;
- PSI >= 0.25: significant shift; the model sees inputs unlike its training data and
  should be retrained (the drift sensor requests the training job).

Gas and particle concentrations are heavy-tailed and pile up at their floors, where
decile bins collapse and PSI can swing on a few readings. So a PSI drift must be
corroborated by the two-sample Kolmogorov-Smirnov distance (rank-based: the tails and
ties do not sway it) of at least `KS_CORROBORATION`; otherwise it reads as moderate.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

MODERATE_PSI = 0.10
SIGNIFICANT_PSI = 0.25
KS_CORROBORATION = 0.10  # the KS distance a PSI drift must also show
_EPS = 1e-4  # floor for empty bins, so one empty bin does not make PSI infinite


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected` (quantile bins of expected)."""
    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    # Bin i holds values in (edges[i-1], edges[i]]; the outer bins are open-ended.
    e = np.bincount(np.searchsorted(edges, expected, side="left"), minlength=edges.size + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="left"), minlength=edges.size + 1)
    e_share = np.maximum(e / expected.size, _EPS)
    a_share = np.maximum(a / actual.size, _EPS)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def ks_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two
    empirical distribution functions (0 the same, 1 disjoint)."""
    from scipy.stats import ks_2samp

    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    return float(ks_2samp(expected, actual).statistic)


def status(value: float, threshold: float = SIGNIFICANT_PSI, ks: float = 1.0) -> str:
    if not np.isfinite(value):
        return "no data"
    if value >= threshold:
        return "drifted" if ks >= KS_CORROBORATION else "moderate"
    return "moderate" if value >= MODERATE_PSI else "stable"


def feature_drift(
    training: pd.DataFrame,
    live: pd.DataFrame,
    features: Iterable[str],
    threshold: float = SIGNIFICANT_PSI,
) -> pd.DataFrame:
    """One row per feature: PSI and KS distance of live vs training, the status, and both
    medians; most drifted first."""
    rows = [
        {
            "feature": f,
            "psi": psi(training[f].to_numpy(), live[f].to_numpy()),
            "ks": ks_distance(training[f].to_numpy(), live[f].to_numpy()),
            "train_median": float(training[f].median()),
            "live_median": float(live[f].median()),
        }
        for f in features
    ]
    out = pd.DataFrame(rows, columns=["feature", "psi", "ks", "train_median", "live_median"])
    out["status"] = [status(v, threshold, k) for v, k in zip(out["psi"], out["ks"], strict=True)]
    return out.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)
