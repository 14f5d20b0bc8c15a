"""Start training when new raw data lands."""

import dagster as dg

from smoke_platform.defs.training.schedules import training_job


@dg.asset_sensor(
    asset_key=dg.AssetKey("raw_sensor_readings"),
    job=training_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def new_raw_data_sensor(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
) -> dg.RunRequest | dg.SkipReason:
    """One training run per new materialisation of `raw_sensor_readings`, unless a model
    was already trained after it (e.g. the run that landed the data trained too)."""
    landed = f"{asset_event.run_id or 'runless'}-{asset_event.timestamp:.6f}"
    trained = context.instance.get_latest_materialization_event(dg.AssetKey("smoke_classifier"))
    if trained is not None and trained.timestamp > asset_event.timestamp:
        return dg.SkipReason(
            f"raw readings {landed} already trained on (smoke_classifier run {trained.run_id})"
        )
    context.log.info("new raw readings landed (%s): requesting training", landed)
    return dg.RunRequest(
        run_key=f"raw_sensor_readings-{landed}",
        tags={"trigger": "new_raw_data", "raw_materialization": landed},
    )
