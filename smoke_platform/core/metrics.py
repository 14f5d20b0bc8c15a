"""Honest classification metrics for fire detection, shared by training and monitoring.

Recall (missed fires) and false-alarm rate are reported separately, together with
recall at a fixed false-alarm rate and detection latency: seconds from the first
fire reading of a session to the model's first alarm in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    roc_auc_score,
    roc_curve,
)

LABEL = "fire_alarm"

# The metric names each place shows, declared once (all are keys of `evaluate`'s result).
# Training and the model store: the threshold-free ones and recall at the target FAR too.
HEADLINE = ("recall", "false_alarm_rate", "recall_at_far", "precision", "f1", "roc_auc", "pr_auc")
# Labelled live stream output beside training (performance report and Dagster metadata).
LIVE_HEADLINE = ("recall", "false_alarm_rate", "precision", "f1", "roc_auc", "accuracy")
LIVE_METADATA = ("recall", "false_alarm_rate", "precision", "f1")
# Real reference readings: what the promotion gate and its check weigh.
REAL_FIGURES = ("recall", "false_alarm_rate", "roc_auc")


def recall_at_far(y: np.ndarray, scores: np.ndarray, far: float) -> float:
    """Best recall achievable on this data with a false-alarm rate <= far (ROC curve)."""
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, scores)
    ok = fpr <= far + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def detection_latency(frame: pd.DataFrame, alarms: np.ndarray) -> dict[str, Any]:
    """Per fire session: seconds from the first fire-labelled reading to the first alarm;
    and `reading_interval_s`, the median time between a session's readings (a sensor's
    period: a stream time-stamped as it was sent, faster than real time, shows less)."""
    data = pd.DataFrame(
        {
            "session": frame["session_id"].to_numpy(),
            "t": _seconds(frame["ts"]),
            "y": frame[LABEL].to_numpy(),
            "alarm": alarms,
        }
    ).sort_values(["session", "t"], kind="stable")
    per_session: dict[str, float | None] = {}
    for session, grp in data[data["y"] == 1].groupby("session", sort=True):
        onset = grp["t"].iloc[0]
        hits = grp.loc[grp["alarm"], "t"]
        per_session[str(session)] = float(hits.iloc[0] - onset) if len(hits) else None
    detected = np.array([v for v in per_session.values() if v is not None])
    gaps = data.groupby("session", sort=False)["t"].diff().dropna()
    return {
        "reading_interval_s": float(gaps.median()) if len(gaps) else None,
        "fire_sessions": len(per_session),
        "missed_sessions": sum(v is None for v in per_session.values()),
        "median_s": float(np.median(detected)) if len(detected) else None,
        "p90_s": float(np.percentile(detected, 90)) if len(detected) else None,
        "max_s": float(detected.max()) if len(detected) else None,
        "per_session_s": per_session,
    }


def _seconds(ts: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(ts):
        return ((ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
    return ts.to_numpy(dtype="float64")


def calibration(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> dict[str, Any]:
    frac_pos, mean_pred = calibration_curve(y, scores, n_bins=bins, strategy="quantile")
    return {
        "brier": float(brier_score_loss(y, scores)),
        "mean_predicted": [round(float(v), 4) for v in mean_pred],
        "fraction_positive": [round(float(v), 4) for v in frac_pos],
    }


def evaluate(
    frame: pd.DataFrame, scores: np.ndarray, threshold: float, target_far: float = 0.01
) -> dict[str, Any]:
    """All headline metrics for `scores` against `frame[fire_alarm]` at `threshold`."""
    y = frame[LABEL].to_numpy().astype(int)
    alarms = scores >= threshold
    tn, fp, fn, tp = confusion_matrix(y, alarms, labels=[0, 1]).ravel()
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    two_classes = len(np.unique(y)) == 2
    return {
        "rows": len(y),
        "threshold": float(threshold),
        "recall": float(recall),
        "false_alarm_rate": float(fp / (fp + tn)) if fp + tn else float("nan"),
        "precision": float(precision),
        "f1": float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0,
        "accuracy": float((tp + tn) / len(y)),
        "recall_at_far": recall_at_far(y, scores, target_far),
        "target_far": target_far,
        "roc_auc": float(roc_auc_score(y, scores)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, scores)) if two_classes else float("nan"),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "calibration": calibration(y, scores) if two_classes else {},
        "latency": detection_latency(frame, alarms),
    }
