"""Sensors over the stream and the monitoring assets.

- `stream_partition_sensor`: a partition per day of stream output; a run when a day's
  predictions (worker) or windows (Spark job) have something new to register.
- `drift_sensor`: requests the training job when `feature_drift` crosses the threshold.
- `degradation_notifier`: posts when live performance falls behind training.
- `run_failure_notifier`: every failed run is logged and posted to the webhook.
"""

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from smoke_platform.defs.common.resources import (
    MonitoringSettingsResource,
    NotifierResource,
    PlatformSettingsResource,
)
from smoke_platform.defs.monitoring.assets import (
    days_by_source,
    feature_drift,
    model_performance_report,
    stream_predictions,
    windowed_analytics,
)
from smoke_platform.defs.monitoring.checks import degradation, drift_verdict
from smoke_platform.defs.monitoring.partitions import stream_dates
from smoke_platform.defs.training.schedules import training_job

stream_outputs_job = dg.define_asset_job(
    "stream_outputs_job",
    selection=[stream_predictions, windowed_analytics],
    description="Register a day of worker predictions and Spark windows.",
)


def _version(folder: Path) -> str:
    """Changes whenever a file in the day's folder is added or rewritten."""
    files = sorted(folder.glob("*.parquet"))
    return f"{len(files)}-{max(f.stat().st_mtime_ns for f in files)}" if files else "0"


@dg.sensor(
    job=stream_outputs_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def stream_partition_sensor(
    context: dg.SensorEvaluationContext,
    settings: PlatformSettingsResource,
    monitoring: MonitoringSettingsResource,
) -> dg.SensorResult:
    """A partition per date folder the worker or the Spark job writes, and a run when
    there is something new to register: a new day at once, a finished day whose files
    changed at once, and today's growing files at most every
    `SMOKE_STREAM_REFRESH_MINUTES` (a live stream writes a file per batch: a run per file
    would be thousands a day). The cursor remembers what each day was last registered at."""
    known = set(context.instance.get_dynamic_partitions(stream_dates.name or ""))
    state: dict[str, dict[str, Any]] = json.loads(context.cursor) if context.cursor else {}
    now, today = time.time(), datetime.now(UTC).date().isoformat()
    refresh_s = monitoring.stream_refresh_minutes * 60
    seen: set[str] = set()
    requests, waiting = [], []
    for key, days in days_by_source(settings).items():
        for day, folder in days.items():
            seen.add(day)
            version, name = _version(folder), f"{key.to_user_string()}:{day}"
            last = state.get(name)
            if last is not None and last["version"] == version:
                continue
            if last is not None and day >= today and now - last["at"] < refresh_s:
                waiting.append(name)
                continue
            state[name] = {"version": version, "at": now}
            requests.append(
                dg.RunRequest(run_key=f"{name}:{version}", partition_key=day, asset_selection=[key])
            )
    new_days = sorted(seen - known)
    reason = None
    if not requests:
        reason = (
            f"nothing new to register ({len(seen)} days known"
            + (
                f"; today's new files are registered at most every "
                f"{monitoring.stream_refresh_minutes} min: {', '.join(waiting)}"
                if waiting
                else ""
            )
            + ")"
        )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[stream_dates.build_add_request(new_days)] if new_days else [],
        cursor=json.dumps(state, sort_keys=True),
        skip_reason=reason,
    )


@dg.asset_sensor(
    asset_key=feature_drift.key,
    job=training_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_sensor(
    context: dg.SensorEvaluationContext,
    asset_event: dg.EventLogEntry,
    notifier: NotifierResource,
) -> dg.RunRequest | dg.SkipReason:
    """Each new `feature_drift` materialisation: retrain when its max PSI crosses the
    threshold. The decision (and why) shows on the sensor's ticks and the run's tags."""
    mat = asset_event.asset_materialization
    meta = mat.metadata if mat else {}
    retrain, why, drifted = drift_verdict(meta)
    if not retrain:
        return dg.SkipReason(why)
    notifier.notify("Feature drift: retraining requested", why, level="warning")
    max_psi = float(meta["max_psi"].value)  # type: ignore[arg-type]
    return dg.RunRequest(
        run_key=f"drift:{asset_event.run_id}",
        tags={
            "smoke/trigger": "feature_drift",
            "smoke/max_psi": f"{max_psi:.3f}",
            "smoke/drifted_features": ",".join(drifted)[:200],
            "smoke/reason": why[:200],
        },
    )


@dg.asset_sensor(
    asset_key=model_performance_report.key,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def degradation_notifier(
    context: dg.SensorEvaluationContext,
    asset_event: dg.EventLogEntry,
    notifier: NotifierResource,
) -> dg.SkipReason:
    """Each new `model_performance_report`: tell people when live performance fell behind
    training (or cannot be judged), with the same verdict as its asset check."""
    mat = asset_event.asset_materialization
    passed, why = degradation(mat.metadata if mat else {})
    if passed:
        return dg.SkipReason(why)
    notifier.notify("Model performance degraded or not judged", why, level="warning")
    return dg.SkipReason(f"notified: {why}")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_notifier(context: dg.RunFailureSensorContext, notifier: NotifierResource) -> None:
    """Every failed run (any job) is logged and posted to the webhook when one is set."""
    run = context.dagster_run
    notifier.notify(
        f"Dagster run failed: {run.job_name}",
        context.failure_event.message or "run failed",
        level="critical",
        run_id=run.run_id,
        tags=",".join(f"{k}={v}" for k, v in run.tags.items() if not k.startswith("dagster/"))
        or "-",
    )
