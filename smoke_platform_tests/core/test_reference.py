"""The real reference readings and the evaluation on them, against a hand computation."""

import numpy as np
import pandas as pd

from smoke_platform.core.scoring import ScoringModel
from smoke_platform.reference import Targets, evaluate_on_reference, load_reference, shortfalls

EXCERPTS = {
    "0-186": ("normal", 187),
    "4674-4848": ("fire", 175),
    "13738-13904": ("fire", 167),
    "22569-22734": ("fire", 166),
    "36274-36442": ("fire", 169),
    "45197-45365": ("fire", 169),
    "54203-54375": ("normal", 173),
}


class TvocRule:
    """A stand-in classifier with a known answer: fire when TVOC > 500 ppb."""

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        p = (features["tvoc_ppb"].to_numpy() > 500).astype(float)
        return np.c_[1 - p, p]


def test_the_reference_file_holds_the_documented_excerpts():
    frame = load_reference()
    assert len(frame) == 1_206 and int(frame["fire_alarm"].sum()) == 846
    got = {
        name: ("fire" if part["fire_alarm"].mean() >= 0.5 else "normal", len(part))
        for name, part in frame.groupby("excerpt")
    }
    assert got == EXCERPTS


def test_figures_equal_a_hand_computation():
    frame = load_reference()
    figures = evaluate_on_reference(ScoringModel(TvocRule(), 0.5, ["tvoc_ppb"]), frame)
    flagged = frame["tvoc_ppb"] > 500
    fire = frame["fire_alarm"] == 1
    assert figures["recall"] == flagged[fire].mean()
    assert figures["false_alarm_rate"] == flagged[~fire].mean()
    by_excerpt = {e["excerpt"]: e for e in figures["excerpts"]}
    for name, part in frame.groupby("excerpt"):
        assert by_excerpt[name]["flagged_share"] == (part["tvoc_ppb"] > 500).mean()
        # The worker's rule: 3 positives in a row open one alert, which stays open here.
        runs = (part["tvoc_ppb"] > 500).astype(int).rolling(3).sum().eq(3).any()
        assert (by_excerpt[name]["alerts"] >= 1) == bool(runs)
    assert figures["fire_excerpts"] == 5


def test_shortfalls_name_each_missed_target():
    good = {"recall": 0.8, "false_alarm_rate": 0.01, "roc_auc": 0.95, "normal_excerpts_alerted": 0}
    assert shortfalls(good, Targets()) == []
    bad = {
        "recall": 0.6,
        "false_alarm_rate": 0.086,
        "roc_auc": float("nan"),
        "normal_excerpts_alerted": 2,
    }
    missed = shortfalls(bad, Targets())
    assert len(missed) == 4 and "ROC-AUC nan" in missed[2]
    # A smoky fire excerpt without an alert is a shortfall; a clean-looking one is not.
    excerpts = [
        {"excerpt": "a", "label": "fire", "median_tvoc_ppb": 1_337.0, "alerts": 0},
        {"excerpt": "b", "label": "fire", "median_tvoc_ppb": 44.0, "alerts": 0},
        {"excerpt": "c", "label": "fire", "median_tvoc_ppb": 1_145.0, "alerts": 1},
        {"excerpt": "d", "label": "normal", "median_tvoc_ppb": 1_500.0, "alerts": 0},
    ]
    assert shortfalls({**good, "excerpts": excerpts}, Targets()) == [
        "no alert on fire excerpt(s) a (median TVOC > 1000 ppb)"
    ]


def test_a_reference_file_with_one_label_is_refused_naming_the_column(tmp_path):
    import pytest

    from smoke_platform.core.io import KaggleFormatError
    from smoke_platform.reference import REFERENCE_CSV

    raw = pd.read_csv(REFERENCE_CSV, index_col=0)
    only_normal = tmp_path / "normal_only.csv"
    raw[raw["Fire Alarm"] == 0].to_csv(only_normal)
    with pytest.raises(KaggleFormatError, match=r"'Fire Alarm' holds only \[0\].*labelled 0"):
        load_reference(only_normal)
    assert len(load_reference(REFERENCE_CSV)) == len(raw)  # both labels: accepted
