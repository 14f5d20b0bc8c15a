"""Warn when live performance falls behind what the model showed in training."""

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

from smoke_platform.defs.monitoring.assets import feature_drift, model_performance_report

RECALL_DROP = 0.05  # warn when live recall is 5 points below the training holdout
FAR_RISE = 0.01  # or the false-alarm rate 1 point above it


def _latest_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> dict:
    event = context.instance.get_latest_materialization_event(key)
    return (
        dict(event.asset_materialization.metadata) if event and event.asset_materialization else {}
    )


def _number(meta: Mapping[str, Any], key: str) -> float:
    value = meta[key].value if key in meta else None
    return float(value) if isinstance(value, (int, float)) else float("nan")


DEGRADATION_FIGURES = ("recall", "false_alarm_rate", "training_recall", "training_false_alarm_rate")


def degradation(meta: Mapping[str, Any]) -> tuple[bool, str]:
    """The one verdict on a `model_performance_report` materialisation (its metadata):
    (in line?, why). A figure that is missing or NaN is a failure, never a silent pass."""
    values = {k: _number(meta, k) for k in DEGRADATION_FIGURES}
    missing = [k for k, v in values.items() if not math.isfinite(v)]
    if missing:
        return False, (
            f"cannot compare live with training: {', '.join(missing)} missing or NaN "
            "(live figures need labelled readings in the stream output; training figures "
            "come from the served model's holdout metrics: retrain with "
            "`smoke materialize --select training_dataset+`)"
        )
    problems = []
    if values["recall"] < values["training_recall"] - RECALL_DROP:
        problems.append(
            f"live recall {values['recall']:.3f} vs training {values['training_recall']:.3f}"
        )
    if values["false_alarm_rate"] > values["training_false_alarm_rate"] + FAR_RISE:
        problems.append(
            f"live FAR {values['false_alarm_rate']:.4f} vs training "
            f"{values['training_false_alarm_rate']:.4f}"
        )
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"live recall {values['recall']:.3f}, FAR {values['false_alarm_rate']:.4f}: in line"
    )


def drift_verdict(meta: Mapping[str, Any]) -> tuple[bool, str, list[str]]:
    """The one verdict on a `feature_drift` materialisation: (retrain?, why, drifted
    features). The check and `drift_sensor` both use it."""
    max_psi, threshold = _number(meta, "max_psi"), _number(meta, "threshold")
    drifted = list(meta["drifted_features"].value) if "drifted_features" in meta else []
    if "enough_data" in meta and not meta["enough_data"].value:
        rows = meta["live_rows"].value if "live_rows" in meta else "?"
        return False, f"only {rows} live readings: too few to act on drift", drifted
    if not math.isfinite(max_psi) or not math.isfinite(threshold):
        return False, "no PSI figures in the latest feature_drift materialisation", drifted
    if max_psi < threshold:
        return False, f"max PSI {max_psi:.3f} below the threshold {threshold}: no retraining", []
    if not drifted:  # over the PSI threshold, but the KS distance does not corroborate it
        return (
            False,
            f"max PSI {max_psi:.3f} not corroborated by the KS distance: no retraining",
            [],
        )
    return True, f"max PSI {max_psi:.3f} >= {threshold} on {', '.join(drifted)}", drifted


@dg.asset_check(asset=model_performance_report)
def model_performance_report_no_degradation(
    context: dg.AssetCheckExecutionContext,
) -> dg.AssetCheckResult:
    """Live recall and false-alarm rate stay near the training holdout (warning; the
    `degradation_notifier` sensor tells people)."""
    passed, why = degradation(_latest_metadata(context, model_performance_report.key))
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, description=why)


@dg.asset_check(asset=feature_drift)
def feature_drift_below_threshold(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """No drift that calls for retraining (warning; the drift sensor retrains)."""
    meta = _latest_metadata(context, feature_drift.key)
    retrain, why, _ = drift_verdict(meta)
    return dg.AssetCheckResult(
        passed=not retrain,
        severity=dg.AssetCheckSeverity.WARN,
        description=why,
        metadata={"max_psi": _number(meta, "max_psi")},
    )
