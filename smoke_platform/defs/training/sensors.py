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
) -> dg.RunRequest:
    """One training run per new materialisation of `raw_sensor_readings`."""
    landed = f"{asset_event.run_id or 'runless'}-{asset_event.timestamp:.6f}"
    context.log.info("new raw readings landed (%s): requesting training", landed)
    return dg.RunRequest(
        run_key=f"raw_sensor_readings-{landed}",
        tags={"trigger": "new_raw_data", "raw_materialization": landed},
    )
