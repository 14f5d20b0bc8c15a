"""Warn when live performance falls behind what the model showed in training."""

import dagster as dg

from smoke_platform.defs.common.resources import NotifierResource
from smoke_platform.defs.monitoring.assets import feature_drift, model_performance_report

RECALL_DROP = 0.05  # warn when live recall is 5 points below the training holdout
FAR_RISE = 0.01  # or the false-alarm rate 1 point above it


def _latest_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> dict:
    event = context.instance.get_latest_materialization_event(key)
    return (
        dict(event.asset_materialization.metadata) if event and event.asset_materialization else {}
    )


@dg.asset_check(asset=model_performance_report)
def model_performance_report_no_degradation(
    context: dg.AssetCheckExecutionContext, notifier: NotifierResource
) -> dg.AssetCheckResult:
    """Live recall and false-alarm rate stay near the training holdout (warning)."""
    meta = _latest_metadata(context, model_performance_report.key)
    get = lambda k: float(meta[k].value) if k in meta else float("nan")  # noqa: E731
    recall, far = get("recall"), get("false_alarm_rate")
    problems = []
    if recall < get("training_recall") - RECALL_DROP:
        problems.append(f"live recall {recall:.3f} vs training {get('training_recall'):.3f}")
    if far > get("training_false_alarm_rate") + FAR_RISE:
        problems.append(f"live FAR {far:.4f} vs training {get('training_false_alarm_rate'):.4f}")
    if problems:
        notifier.notify("Model performance degraded", "; ".join(problems), level="warning")
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or f"live recall {recall:.3f}, FAR {far:.4f}: in line",
    )


@dg.asset_check(asset=feature_drift)
def feature_drift_below_threshold(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """No model feature's PSI crosses the threshold (warning; the drift sensor retrains)."""
    meta = _latest_metadata(context, feature_drift.key)
    drifted = list(meta["drifted_features"].value) if "drifted_features" in meta else []
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"drifted: {', '.join(drifted)}" if drifted else "no feature drifted"),
        metadata={"max_psi": meta["max_psi"].value if "max_psi" in meta else float("nan")},
    )
