"""Sensors over the stream and the monitoring assets.

- `stream_partition_sensor`: a partition per day of stream output; a run when a day's
  predictions (worker) or windows (Spark job) change.
- `drift_sensor`: requests the training job when `feature_drift` crosses the threshold.
- `run_failure_notifier`: every failed run is logged and posted to the webhook.
"""

from pathlib import Path

import dagster as dg

from smoke_platform.defs.common.resources import NotifierResource, PlatformSettingsResource
from smoke_platform.defs.monitoring.assets import (
    feature_drift,
    stream_predictions,
    stream_sources,
    windowed_analytics,
)
from smoke_platform.defs.monitoring.partitions import stream_dates
from smoke_platform.defs.training.schedules import training_job
from streaming.sink import output_days

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
    context: dg.SensorEvaluationContext, settings: PlatformSettingsResource
) -> dg.SensorResult:
    """A partition per date folder the worker or the Spark job writes; a run whenever a
    day's files change (the run key carries the folder's version: one run per update)."""
    known = set(context.instance.get_dynamic_partitions(stream_dates.name or ""))
    seen: set[str] = set()
    requests = []
    for key, root in stream_sources(settings).items():
        for day in output_days(root):
            seen.add(day)
            requests.append(
                dg.RunRequest(
                    run_key=f"{key.to_user_string()}:{day}:{_version(root / f'date={day}')}",
                    partition_key=day,
                    asset_selection=[key],
                )
            )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[stream_dates.build_add_request(sorted(seen - known))],
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
    max_psi = float(meta["max_psi"].value) if "max_psi" in meta else float("nan")  # type: ignore[arg-type]
    threshold = float(meta["threshold"].value) if "threshold" in meta else float("nan")  # type: ignore[arg-type]
    drifted = list(meta["drifted_features"].value) if "drifted_features" in meta else []  # type: ignore[arg-type]
    if "enough_data" in meta and not meta["enough_data"].value:
        rows = meta["live_rows"].value if "live_rows" in meta else "?"
        return dg.SkipReason(f"only {rows} live readings: too few to act on drift")
    if not max_psi >= threshold:
        return dg.SkipReason(
            f"max PSI {max_psi:.3f} below the threshold {threshold}: no retraining"
        )
    notifier.notify(
        "Feature drift: retraining requested",
        f"max PSI {max_psi:.3f} >= {threshold} on {', '.join(drifted)}",
        level="warning",
    )
    return dg.RunRequest(
        run_key=f"drift:{asset_event.run_id}",
        tags={
            "smoke/trigger": "feature_drift",
            "smoke/max_psi": f"{max_psi:.3f}",
            "smoke/drifted_features": ",".join(drifted)[:200],
        },
    )


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
